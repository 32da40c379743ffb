;; Indentation for Helix (queries/indents.scm is nvim-treesitter's).

[
  (block)
  (list)
  (parenthesized_expression)
] @indent

[
  "}"
  "]"
  ")"
] @outdent
