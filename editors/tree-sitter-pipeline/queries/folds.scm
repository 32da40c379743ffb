[
  (block)
  (list)
  (triple_string)
  (parenthesized_expression)
] @fold
