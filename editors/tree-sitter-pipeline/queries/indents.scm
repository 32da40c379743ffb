;; Indentation for nvim-treesitter (queries/helix/indents.scm is Helix's).

[
  (block)
  (list)
  (parenthesized_expression)
] @indent.begin

(block
  "}" @indent.end)

(block
  "}" @indent.branch)

(list
  "]" @indent.branch)

(parenthesized_expression
  ")" @indent.branch)

;; Keep what the author wrote inside scripts and comments.
[
  (triple_string)
  (comment)
] @indent.auto
