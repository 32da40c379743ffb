" slipway's .pipeline files: indent inside { }, [ ] and ( ).
if exists('b:did_indent')
  finish
endif
let b:did_indent = 1

setlocal indentexpr=GetPipelineIndent()
setlocal indentkeys=0{,0},0],0),!^F,o,O
setlocal nosmartindent
let b:undo_indent = 'setlocal indentexpr< indentkeys< smartindent<'

if exists('*GetPipelineIndent')
  finish
endif

function! s:InScript(lnum) abort
  " Inside a """...""" string: leave the author's indentation alone.
  return synIDattr(synID(a:lnum, 1, 1), 'name') =~# 'pipelineTripleString\|pipelineScript'
endfunction

function! GetPipelineIndent() abort
  let prev = prevnonblank(v:lnum - 1)
  if prev == 0
    return 0
  endif
  if s:InScript(v:lnum)
    return -1
  endif
  let ind = indent(prev)
  " The previous line without its comment and strings.
  let line = substitute(getline(prev), '"\%([^"\\]\|\\.\)*"', '""', 'g')
  let line = substitute(line, '#.*$', '', '')
  if line =~# '\%({\|\[\|(\)\s*$'
    let ind += shiftwidth()
  endif
  if getline(v:lnum) =~# '^\s*[}\])]'
    let ind -= shiftwidth()
  endif
  return ind < 0 ? 0 : ind
endfunction
