;; Stages, templates, environments and the pipeline's env share one
;; namespace, in any order: the file is one scope. A stage's or template's
;; body is a scope of its own for its `env` and `matrix` names.

(source_file) @local.scope

(stage_declaration
  body: (block) @local.scope)

(setting
  key: (identifier) @_key
  body: (block) @local.scope
  (#eq? @_key "template"))

(stage_declaration
  name: (identifier) @local.definition.function)

(after_clause
  stage: (identifier) @local.reference)

(setting
  key: (identifier) @_key
  argument: (word) @local.definition.type
  (#eq? @_key "template"))

(uses_clause
  template: (identifier) @local.reference)

(setting
  key: (identifier) @_key
  argument: (word) @local.definition.constant
  (#eq? @_key "secret"))

;; `NAME = value` in `env` and `matrix` blocks.
(setting
  key: (identifier) @local.definition.var
  !argument
  value: (_))

(interpolation
  (reference) @local.reference)

(path
  "."
  (identifier) @local.reference)
