;; Highlights for slipway's .pipeline files.
;;
;; Capture names follow nvim-treesitter's (the tree-sitter CLI takes any
;; name); queries/helix/highlights.scm is this file with Helix's names, and
;; scripts/test-editors checks that the two agree. No two patterns capture the
;; same node, so editors that let the first matching pattern win (Helix, the
;; CLI) and those that let the last one win (Neovim) colour alike.
;;
;; The grammar is generic (every line is `key args... [= value] [{ block }]`),
;; so what a setting means comes from its key, matched by name here. The list
;; of keys is the language's (docs/language.md, "Settings at a glance").

(comment) @comment @spell

;; ---------------------------------------------------------------- stages

[
  "stage"
  "finally"
  "after"
  "uses"
] @keyword

"when" @keyword.conditional

(stage_declaration
  name: (identifier) @function)

(after_clause
  stage: (identifier) @function.call)

(uses_clause
  template: (identifier) @type)

;; -------------------------------------------------------------- settings

;; Keys of the language.
(setting
  key: (identifier) @keyword
  (#any-of? @keyword
    "pipeline" "include" "env" "secret" "environment" "template"
    "image" "run" "matrix" "service" "retry" "timeout" "allow-failure"
    "artifact" "cache" "inputs" "build" "release" "manual" "ready"
    "resources" "cpu" "memory"
    "dockerfile" "target" "tag" "label" "arg" "push"
    "namespace" "manifests" "wait" "rollback" "prune" "history"))

;; `NAME = value` in `env` and `matrix`.
(setting
  key: (identifier) @variable
  !argument
  value: (_)
  (#not-any-of? @variable
    "pipeline" "include" "env" "secret" "environment" "template"
    "image" "run" "matrix" "service" "retry" "timeout" "allow-failure"
    "artifact" "cache" "inputs" "build" "release" "manual" "ready"
    "resources" "cpu" "memory"
    "dockerfile" "target" "tag" "label" "arg" "push"
    "namespace" "manifests" "wait" "rollback" "prune" "history"))

;; Any other key: `slipway check` reports it as an unknown setting.
(setting
  key: (identifier) @property
  argument: (_)
  (#not-any-of? @property
    "pipeline" "include" "env" "secret" "environment" "template"
    "image" "run" "matrix" "service" "retry" "timeout" "allow-failure"
    "artifact" "cache" "inputs" "build" "release" "manual" "ready"
    "resources" "cpu" "memory"
    "dockerfile" "target" "tag" "label" "arg" "push"
    "namespace" "manifests" "wait" "rollback" "prune" "history"))

(setting
  key: (identifier) @property
  !argument
  !value
  (#not-any-of? @property
    "pipeline" "include" "env" "secret" "environment" "template"
    "image" "run" "matrix" "service" "retry" "timeout" "allow-failure"
    "artifact" "cache" "inputs" "build" "release" "manual" "ready"
    "resources" "cpu" "memory"
    "dockerfile" "target" "tag" "label" "arg" "push"
    "namespace" "manifests" "wait" "rollback" "prune" "history"))

;; Names that settings declare, and bare words (`rollback on-failure`).
(setting
  key: (identifier) @_key
  argument: (word) @type.definition
  (#eq? @_key "template"))

(setting
  key: (identifier) @_key
  argument: (word) @label
  (#any-of? @_key "environment" "service" "release"))

(setting
  key: (identifier) @_key
  argument: (word) @constant
  (#eq? @_key "secret"))

(setting
  key: (identifier) @_key
  argument: (word) @constant.builtin
  (#not-any-of? @_key "template" "environment" "service" "release" "secret"))

(setting
  value: (word) @constant.builtin)

(list
  (word) @constant.builtin)

(call
  argument: (word) @constant.builtin)

"=" @operator

;; ---------------------------------------------------------------- values

[
  (string)
  (triple_string)
] @string

(escape_sequence) @string.escape

(interpolation
  [
    "${"
    "}"
  ] @punctuation.special)

(interpolation
  (reference) @variable)

[
  (integer)
  (duration)
] @number

(boolean) @boolean

;; ------------------------------------------------------------ conditions

(call
  function: (identifier) @function.builtin)

;; `branch`, `tag`, `environment`, `git.sha`, `env.NAME`
(path
  .
  (identifier) @variable.builtin
  (#any-of? @variable.builtin "branch" "tag" "environment" "git" "env"))

(path
  .
  (identifier) @variable
  (#not-any-of? @variable "branch" "tag" "environment" "git" "env"))

(path
  "."
  (identifier) @variable.member)

[
  "=="
  "!="
  "=~"
  "&&"
  "||"
  "!"
] @operator

;; ----------------------------------------------------------- punctuation

(block
  [
    "{"
    "}"
  ] @punctuation.bracket)

(list
  [
    "["
    "]"
  ] @punctuation.bracket)

(parenthesized_expression
  [
    "("
    ")"
  ] @punctuation.bracket)

(call
  [
    "("
    ")"
  ] @punctuation.bracket)

[
  ","
  "."
] @punctuation.delimiter
