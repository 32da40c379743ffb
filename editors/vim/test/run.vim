" Checks editors/vim on a sample: the file type is detected, the syntax
" file loads without errors, and names get the groups they should.
"
"   vim -Nu NONE -i NONE -es -S editors/vim/test/run.vim
"
" Writes `ok` to the file named by $OUT when all is well, else v:errors.

set nocompatible
let s:root = fnamemodify(expand('<sfile>:p'), ':h:h')
let &runtimepath = s:root . ',' . &runtimepath
filetype plugin indent on
syntax on

function! s:Group(line, col) abort
  return synIDattr(synID(a:line, a:col, 1), 'name')
endfunction

" The group at the first occurrence of `text` on `line` (1-based).
function! s:Expect(line, text, group) abort
  let col = stridx(getline(a:line), a:text) + 1
  call assert_true(col > 0, printf('line %d has no %s', a:line, a:text))
  call assert_equal(a:group, s:Group(a:line, col), printf('line %d: %s', a:line, a:text))
endfunction

try
  execute 'edit ' . fnameescape(s:root . '/test/sample.pipeline')
  call assert_equal('pipeline', &filetype)
  call assert_equal('pipeline', b:current_syntax)
  call assert_equal('#\ %s', escape(&commentstring, ' '))

  call s:Expect(1, 'pipeline', 'pipelineTopLevel')
  call s:Expect(1, '"vim"', 'pipelineString')
  call s:Expect(2, 'secret', 'pipelineTopLevel')
  call s:Expect(3, 'IMAGE', 'pipelineEnvKey')
  call s:Expect(3, '${', 'pipelineInterpDelim')
  call s:Expect(4, 'node', 'pipelineTemplateName')
  call s:Expect(5, 'stage', 'pipelineStage')
  call s:Expect(5, 'deploy', 'pipelineStageName')
  call s:Expect(5, 'after', 'pipelineClause')
  call s:Expect(5, 'build', 'pipelineStageRef')
  call s:Expect(5, 'test', 'pipelineStageRef')
  call s:Expect(5, 'uses', 'pipelineClause')
  call s:Expect(5, 'when', 'pipelineConditional')
  call s:Expect(5, 'branch', 'pipelineBuiltinVar')
  call s:Expect(5, '==', 'pipelineOperator')
  call s:Expect(5, '&&', 'pipelineOperator')
  call s:Expect(5, 'changed', 'pipelineCall')
  call s:Expect(6, 'timeout', 'pipelineSetting')
  call s:Expect(6, '1h30m', 'pipelineDuration')
  call s:Expect(7, '2', 'pipelineNumber')
  call s:Expect(8, 'run', 'pipelineSetting')
  call s:Expect(8, '$HOME', 'pipelineShellVar')
  call s:Expect(8, '\"', 'pipelineEscape')
  call s:Expect(10, '${USER', 'pipelineShellVar')
  call s:Expect(12, 'on-failure', 'pipelineRollback')
  call s:Expect(14, 'a comment', 'pipelineComment')

  " Indentation: a new line after `{` is indented, `}` lines up again.
  enew
  setfiletype pipeline
  call setline(1, 'stage a {')
  execute "normal! Goimage \"x\"\<Esc>"
  execute "normal! o}\<Esc>"
  call assert_equal(['stage a {', '  image "x"', '}'], getline(1, '$'))
catch
  call add(v:errors, 'exception: ' . v:exception . ' at ' . v:throwpoint)
endtry

call writefile(empty(v:errors) ? ['ok'] : v:errors, $OUT)
qall!
