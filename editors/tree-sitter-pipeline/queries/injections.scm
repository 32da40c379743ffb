;; `run` scripts are shell scripts (slipway runs them with `sh -e`). slipway
;; does not interpolate them: `${NAME}` in a script is the shell's.
((setting
  key: (identifier) @_key
  argument: [
    (string
      (string_content) @injection.content)
    (triple_string
      (string_content) @injection.content)
  ])
  (#eq? @_key "run")
  (#set! injection.language "bash")
  (#set! injection.include-children))

;; The right side of `=~` is a regular expression (Rust `regex` syntax).
((comparison
  operator: "=~"
  right: (string
    (string_content) @injection.content))
  (#set! injection.language "regex"))

((comment) @injection.content
  (#set! injection.language "comment"))
