" Vim syntax file
" Language:   slipway pipeline (*.pipeline)
" Reference:  docs/language.md; grammar/pipeline.pest is the authority.
"
" Kept in step with the TextMate grammar (editors/vscode/syntaxes) and the
" tree-sitter grammar (editors/tree-sitter-pipeline): see docs/editors.md.

if exists('b:current_syntax')
  finish
endif

let s:cpo_save = &cpo
set cpo&vim

syn case match
" Names may contain `-` (`allow-failure`, `shard-1`).
syn iskeyword @,48-57,_,192-255,-

" Comments: `#` to the end of the line, outside strings.
syn keyword pipelineTodo contained TODO FIXME XXX NOTE
syn match   pipelineComment "#.*$" contains=pipelineTodo,@Spell

" A backslash at the very end of a line joins the next line to it.
syn match   pipelineContinuation "\\$"

" Stage headers: stage NAME [after A, B] [uses T] [when EXPR] {
syn keyword pipelineStage stage finally nextgroup=pipelineStageName skipwhite
syn match   pipelineStageName "\<[A-Za-z_][A-Za-z0-9_-]*\>" contained
syn keyword pipelineClause after nextgroup=pipelineStageRef skipwhite skipnl
syn match   pipelineStageRef "\<[A-Za-z_][A-Za-z0-9_-]*\>" contained nextgroup=pipelineStageRefSep skipwhite
syn match   pipelineStageRefSep "," contained nextgroup=pipelineStageRef skipwhite skipnl
syn keyword pipelineClause uses nextgroup=pipelineTemplateName skipwhite
syn match   pipelineTemplateName "\<[A-Za-z_][A-Za-z0-9_-]*\>" contained
syn region  pipelineCondition matchgroup=pipelineConditional start="\<when\>" end="\ze{\|\ze\<\%(after\|uses\)\>" contains=pipelineOperator,pipelineString,pipelineTripleString,pipelineBoolean,pipelineCall,pipelineBuiltinVar,pipelineEnvVar,pipelineComment,pipelineContinuation,pipelineParen keepend

" Conditions.
syn match   pipelineOperator "==\|!=\|=\~\|&&\|||\|!" contained
syn match   pipelineParen "[()]" contained
syn match   pipelineCall "\<[A-Za-z_][A-Za-z0-9_-]*\ze\s*(" contained
syn match   pipelineBuiltinVar "\<\%(branch\|tag\|environment\)\>\|\<git\.\%(sha\|short_sha\|branch\|tag\)\>" contained
syn match   pipelineEnvVar "\<env\.[A-Za-z_][A-Za-z0-9_-]*\>" contained

" Declarations written as settings.
syn keyword pipelineTopLevel pipeline include env secret
syn keyword pipelineTopLevel template nextgroup=pipelineTemplateName skipwhite
syn keyword pipelineTopLevel environment nextgroup=pipelineEnvironmentName skipwhite
syn match   pipelineEnvironmentName "\<[A-Za-z_][A-Za-z0-9_-]*\>" contained

" Settings in stages, templates, `build` and `release`.
syn keyword pipelineSetting image matrix retry timeout allow-failure artifact cache inputs build manual ready
syn keyword pipelineSetting resources cpu memory
syn keyword pipelineSetting dockerfile target tag label arg push namespace manifests wait prune history
syn keyword pipelineSetting service release nextgroup=pipelineServiceName skipwhite
syn match   pipelineServiceName "\<[A-Za-z_][A-Za-z0-9_-]*\>" contained
syn keyword pipelineSetting rollback nextgroup=pipelineRollback skipwhite
syn keyword pipelineRollback on-failure never contained
syn match   pipelineEnvKey "^\s*\zs[A-Za-z_][A-Za-z0-9_-]*\ze\s*=[=~]\@!"
syn match   pipelineEnvKey "{\s*\zs[A-Za-z_][A-Za-z0-9_-]*\ze\s*=[=~]\@!"
syn match   pipelineAssign "=[=~]\@!"

" `run` scripts: slipway does not interpolate them; `$NAME` is the shell's.
syn keyword pipelineSetting run nextgroup=pipelineScript,pipelineScriptLine skipwhite
syn region  pipelineScript start=+"""+ end=+"""+ contained contains=pipelineShellVar
syn region  pipelineScriptLine start=+"\%(""\)\@!+ skip=+\\\\\|\\"+ end=+"\|$+ contained contains=pipelineEscape,pipelineBadEscape,pipelineShellVar
syn match   pipelineShellVar "\$\%({[^}"]*}\|[A-Za-z_][A-Za-z0-9_]*\)" contained

" Values.
syn region  pipelineTripleString start=+"""+ end=+"""+ contains=pipelineRawInterp
syn region  pipelineString start=+"\%(""\)\@!+ skip=+\\\\\|\\"+ end=+"\|$+ contains=pipelineEscape,pipelineBadEscape,pipelineInterp
syn match   pipelineBadEscape "\\." contained
syn match   pipelineEscape "\\[\"\\ntr$]" contained
syn region  pipelineInterp matchgroup=pipelineInterpDelim start="\${" end="}\|\ze\"\|$" contained contains=pipelineInterpName
syn region  pipelineRawInterp matchgroup=pipelineInterpDelim start="\${" end="}\|\ze\"\"\"" contained contains=pipelineInterpName
syn match   pipelineInterpName "\<\%(git\|secret\)\.\|\<environment\>" contained
syn match   pipelineDuration "\<\d\+\a\+\%(\d\+\a\+\)*\>"
syn match   pipelineNumber "-\=\<\d\+\>"
syn keyword pipelineBoolean true false

syn sync minlines=200

hi def link pipelineTodo            Todo
hi def link pipelineComment         Comment
hi def link pipelineContinuation    SpecialChar
hi def link pipelineStage           Keyword
hi def link pipelineStageName       Function
hi def link pipelineClause          Keyword
hi def link pipelineStageRef        Function
hi def link pipelineStageRefSep     Delimiter
hi def link pipelineTemplateName    Type
hi def link pipelineConditional     Conditional
hi def link pipelineOperator        Operator
hi def link pipelineParen           Delimiter
hi def link pipelineCall            Function
hi def link pipelineBuiltinVar      Identifier
hi def link pipelineEnvVar          Identifier
hi def link pipelineTopLevel        Keyword
hi def link pipelineEnvironmentName Label
hi def link pipelineSetting         Statement
hi def link pipelineServiceName     Label
hi def link pipelineRollback        Constant
hi def link pipelineEnvKey          Identifier
hi def link pipelineAssign          Operator
hi def link pipelineScript          String
hi def link pipelineScriptLine      String
hi def link pipelineShellVar        PreProc
hi def link pipelineTripleString    String
hi def link pipelineString          String
hi def link pipelineBadEscape       Error
hi def link pipelineEscape          SpecialChar
hi def link pipelineInterpDelim     Delimiter
hi def link pipelineInterp          Identifier
hi def link pipelineRawInterp       Identifier
hi def link pipelineInterpName      Special
hi def link pipelineDuration        Number
hi def link pipelineNumber          Number
hi def link pipelineBoolean         Boolean

let b:current_syntax = 'pipeline'

let &cpo = s:cpo_save
unlet s:cpo_save
