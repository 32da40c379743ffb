// External scanner for the `.pipeline` grammar.
//
// It lexes the tokens whose pest rules a regular expression cannot state
// exactly (grammar/pipeline.pest is the authority; rule names in comments):
//
// - `_line_continuation` (WHITESPACE = "\\" ~ NEWLINE): an extra, so it would
//   be valid inside strings too; it is only produced outside them, where pest
//   skips it, so that `"abc \` at the end of a line is an error as in pest.
// - `_string_text` (plain_text), `_triple_text` (triple_text),
//   `_reference_text` (interp_body), `_triple_reference_text`
//   (interp_raw_body): runs of text inside strings. They stop at `"""`
//   (which a regular expression without lookahead cannot say) and they keep
//   NUL bytes, which the generated lexer would take for the end of the file.
// - `comment` (COMMENT = "#" ~ (!"\n" ~ ANY)*): to the next `\n`, NUL bytes
//   included, which the generated lexer would take for the end of the file.
// - `integer` (number) and `duration`: pest requires that they are not
//   followed by a name character (`!ident_char`), so `10-3`, `5m_x` and
//   `-5m` are errors rather than two values.
//
// The scanner keeps no state.

#include "tree_sitter/parser.h"

#include <stdbool.h>
#include <stdint.h>

enum TokenType {
  LINE_CONTINUATION,
  STRING_TEXT,
  TRIPLE_TEXT,
  REFERENCE_TEXT,
  TRIPLE_REFERENCE_TEXT,
  COMMENT,
  INTEGER,
  DURATION,
  ERROR_SENTINEL,
};

void *tree_sitter_pipeline_external_scanner_create(void) { return NULL; }

void tree_sitter_pipeline_external_scanner_destroy(void *payload) {
  (void)payload;
}

unsigned tree_sitter_pipeline_external_scanner_serialize(void *payload,
                                                         char *buffer) {
  (void)payload;
  (void)buffer;
  return 0;
}

void tree_sitter_pipeline_external_scanner_deserialize(void *payload,
                                                       const char *buffer,
                                                       unsigned length) {
  (void)payload;
  (void)buffer;
  (void)length;
}

static inline bool at_eof(TSLexer *lexer) { return lexer->eof(lexer); }

// Bytes that are not UTF-8 decode to a negative code point. slipway refuses
// such a file before parsing it, so they are never text here: the string
// ends at them, and the parse fails as pest's would.
static inline bool at_bad_byte(TSLexer *lexer) { return lexer->lookahead < 0; }

static inline void advance(TSLexer *lexer) { lexer->advance(lexer, false); }

static inline void skip(TSLexer *lexer) { lexer->advance(lexer, true); }

static inline bool is_digit(int32_t c) { return c >= '0' && c <= '9'; }

static inline bool is_alpha(int32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// pest: ident_char = ASCII_ALPHANUMERIC | "_" | "-"
static inline bool is_ident_char(int32_t c) {
  return is_alpha(c) || is_digit(c) || c == '_' || c == '-';
}

// pest: plain_text = @{ (!("\"" | "\\" | "${" | "\n") ~ ANY)+ }
static bool scan_string_text(TSLexer *lexer) {
  bool has_text = false;
  for (;;) {
    lexer->mark_end(lexer);
    if (at_eof(lexer)) {
      break;
    }
    int32_t c = lexer->lookahead;
    if (c == '"' || c == '\\' || c == '\n' || at_bad_byte(lexer)) {
      break;
    }
    advance(lexer);
    if (c == '$' && lexer->lookahead == '{') {
      break;
    }
    has_text = true;
  }
  lexer->result_symbol = STRING_TEXT;
  return has_text;
}

// Advances over `"` characters; true when `"""` starts here. The caller marks
// the end before calling, so that the quotes are not part of the token when
// they close the string.
static bool consume_quotes(TSLexer *lexer) {
  int quotes = 0;
  while (quotes < 3 && !at_eof(lexer) && lexer->lookahead == '"') {
    advance(lexer);
    quotes++;
  }
  return quotes == 3;
}

// pest: triple_text = @{ (!("\"\"\"" | "${") ~ ANY)+ }
static bool scan_triple_text(TSLexer *lexer) {
  bool has_text = false;
  for (;;) {
    lexer->mark_end(lexer);
    if (at_eof(lexer) || at_bad_byte(lexer)) {
      break;
    }
    int32_t c = lexer->lookahead;
    if (c == '"') {
      if (consume_quotes(lexer)) {
        break;
      }
    } else {
      advance(lexer);
      if (c == '$' && lexer->lookahead == '{') {
        break;
      }
    }
    has_text = true;
  }
  lexer->result_symbol = TRIPLE_TEXT;
  return has_text;
}

// pest: interp_body = @{ (!("}" | "\"" | "\n") ~ ANY)* }
static bool scan_reference_text(TSLexer *lexer) {
  bool has_text = false;
  while (!at_eof(lexer)) {
    int32_t c = lexer->lookahead;
    if (c == '}' || c == '"' || c == '\n' || at_bad_byte(lexer)) {
      break;
    }
    advance(lexer);
    has_text = true;
  }
  lexer->mark_end(lexer);
  lexer->result_symbol = REFERENCE_TEXT;
  return has_text;
}

// pest: interp_raw_body = @{ (!("}" | "\"\"\"") ~ ANY)* }
static bool scan_triple_reference_text(TSLexer *lexer) {
  bool has_text = false;
  for (;;) {
    lexer->mark_end(lexer);
    if (at_eof(lexer) || at_bad_byte(lexer) || lexer->lookahead == '}') {
      break;
    }
    if (lexer->lookahead == '"') {
      if (consume_quotes(lexer)) {
        break;
      }
    } else {
      advance(lexer);
    }
    has_text = true;
  }
  lexer->result_symbol = TRIPLE_REFERENCE_TEXT;
  return has_text;
}

// pest: number   = @{ "-"? ~ ASCII_DIGIT+ ~ !ident_char }
//       duration = @{ (ASCII_DIGIT+ ~ ASCII_ALPHA+)+ ~ !ident_char }
// Called at a digit or `-`.
static bool scan_number(TSLexer *lexer, const bool *valid_symbols) {
  bool negative = false;
  if (lexer->lookahead == '-') {
    negative = true;
    advance(lexer);
  }
  if (at_eof(lexer) || !is_digit(lexer->lookahead)) {
    return false;
  }
  while (!at_eof(lexer) && is_digit(lexer->lookahead)) {
    advance(lexer);
  }
  if (at_eof(lexer) || !is_alpha(lexer->lookahead)) {
    if (!at_eof(lexer) && is_ident_char(lexer->lookahead)) {
      return false;
    }
    lexer->mark_end(lexer);
    lexer->result_symbol = INTEGER;
    return valid_symbols[INTEGER];
  }
  if (negative) {
    return false;
  }
  // A duration: one or more groups of digits then letters.
  for (;;) {
    while (!at_eof(lexer) && is_alpha(lexer->lookahead)) {
      advance(lexer);
    }
    if (at_eof(lexer) || !is_digit(lexer->lookahead)) {
      break;
    }
    while (!at_eof(lexer) && is_digit(lexer->lookahead)) {
      advance(lexer);
    }
    if (at_eof(lexer) || !is_alpha(lexer->lookahead)) {
      // Digits without a unit after the last complete group: pest's
      // duration stops before them and `!ident_char` fails.
      return false;
    }
  }
  if (!at_eof(lexer) && is_ident_char(lexer->lookahead)) {
    return false;
  }
  lexer->mark_end(lexer);
  lexer->result_symbol = DURATION;
  return valid_symbols[DURATION];
}

bool tree_sitter_pipeline_external_scanner_scan(void *payload, TSLexer *lexer,
                                                const bool *valid_symbols) {
  (void)payload;
  // In error recovery every symbol is valid. Produce nothing then: tree-sitter
  // also lexes in that mode when no valid token matches, and a line
  // continuation found so (an extra, valid everywhere) would hide the error
  // of a `\` at the end of a line inside a string.
  if (valid_symbols[ERROR_SENTINEL]) {
    return false;
  }

  // Inside a string, text is text: no blanks are skipped and no line
  // continuation is taken.
  if (valid_symbols[STRING_TEXT]) {
    return scan_string_text(lexer);
  }
  if (valid_symbols[TRIPLE_TEXT]) {
    return scan_triple_text(lexer);
  }
  if (valid_symbols[REFERENCE_TEXT]) {
    return scan_reference_text(lexer);
  }
  if (valid_symbols[TRIPLE_REFERENCE_TEXT]) {
    return scan_triple_reference_text(lexer);
  }

  // Outside strings, blanks are extras: skip them to find a token.
  while (!at_eof(lexer) &&
         (lexer->lookahead == ' ' || lexer->lookahead == '\t')) {
    skip(lexer);
  }
  if (at_eof(lexer)) {
    return false;
  }

  if (lexer->lookahead == '#' && valid_symbols[COMMENT]) {
    advance(lexer);
    while (!at_eof(lexer) && lexer->lookahead != '\n' && !at_bad_byte(lexer)) {
      advance(lexer);
    }
    lexer->mark_end(lexer);
    lexer->result_symbol = COMMENT;
    return true;
  }

  if (lexer->lookahead == '\\' && valid_symbols[LINE_CONTINUATION]) {
    advance(lexer);
    if (lexer->lookahead == '\r') {
      advance(lexer);
      if (lexer->lookahead == '\n') {
        advance(lexer);
      }
    } else if (lexer->lookahead == '\n') {
      advance(lexer);
    } else {
      return false;
    }
    lexer->mark_end(lexer);
    lexer->result_symbol = LINE_CONTINUATION;
    return true;
  }

  if ((valid_symbols[INTEGER] || valid_symbols[DURATION]) &&
      (is_digit(lexer->lookahead) || lexer->lookahead == '-')) {
    return scan_number(lexer, valid_symbols);
  }

  return false;
}
