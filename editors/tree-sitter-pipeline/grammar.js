/**
 * @file Tree-sitter grammar for slipway's `.pipeline` files.
 *
 * `grammar/pipeline.pest` (at the root of the repository) is the authority on
 * the language's syntax; this grammar follows it rule for rule, so that a file
 * pest accepts parses here without an ERROR node and a file pest rejects shows
 * one. `scripts/test-editors` checks that on every example and fixture. Keep
 * the pest rule names in the comments when you change something.
 *
 * Like the pest grammar, it is permissive: a body is a list of generic
 * settings (`key args... [= value] [{ block }]`), one per line; which keys mean
 * something where is `slipway check`'s business, not the grammar's. Only stage
 * headers, `when` conditions and strings have their own shape.
 *
 * Newlines are tokens (pest's `nl`): they end settings and may only appear
 * where pest allows them. Blanks, comments and a backslash at the end of a
 * line are extras (pest's WHITESPACE and COMMENT).
 *
 * src/scanner.c lexes what a regular expression cannot say exactly as pest
 * does: string and `${...}` text (up to `"""`, NUL bytes included), comments
 * (NUL bytes included), numbers and durations (which must not run into a
 * name character), and the line continuation (which must not be taken inside
 * a string).
 *
 * @license Apache-2.0
 */

/// <reference types="tree-sitter-cli/dsl" />
// @ts-check

// pest: ident = (ASCII_ALPHA | "_") ~ (ASCII_ALPHANUMERIC | "_" | "-")*
const IDENT = /[A-Za-z_][A-Za-z0-9_-]*/;

const PREC = {
  or: 1, // pest: or_expr
  and: 2, // pest: and_expr
};

module.exports = grammar({
  name: 'pipeline',

  externals: $ => [
    $._line_continuation, // pest: WHITESPACE = "\\" ~ NEWLINE
    $._string_text, // pest: plain_text
    $._triple_text, // pest: triple_text
    $._reference_text, // pest: interp_body
    $._triple_reference_text, // pest: interp_raw_body
    $.comment, // pest: COMMENT
    $.integer, // pest: number
    $.duration, // pest: duration
    $._error_sentinel, // never produced: marks error recovery for the scanner
  ],

  // pest: WHITESPACE (blanks; `\` + newline) and COMMENT. No newline here:
  // newlines are `_newline` tokens. No form feed, no U+2028, no BOM: pest
  // rejects them.
  extras: $ => [/[ \t]/, $._line_continuation, $.comment],

  word: $ => $.identifier,

  rules: {
    // pest: file = { SOI ~ nl* ~ (item ~ (nl+ | &EOI))* ~ EOI }, and
    // `syntax::parse` skips a byte order mark at the very start. Current
    // tree-sitter runtimes skip it themselves; `byte_order_mark` is for
    // older ones, which do not.
    source_file: $ => seq(
      optional($.byte_order_mark),
      repeat($._newline),
      repeat(seq($._item, repeat1($._newline))),
      optional($._item),
    ),

    byte_order_mark: _ => '\uFEFF',

    // pest: item = { &stage_keyword ~ stage_decl | !stage_keyword ~ setting }
    _item: $ => choice($.stage_declaration, $.setting),

    // ------------------------------------------------------------ stages

    // pest: stage_decl = { stage_keyword ~ name ~ (nl* ~ clause)* ~ nl* ~ block }
    stage_declaration: $ => seq(
      field('kind', choice('stage', 'finally')),
      field('name', $.identifier),
      repeat(choice($._newline, $._clause)),
      field('body', $.block),
    ),

    _clause: $ => choice($.after_clause, $.uses_clause, $.when_clause),

    // pest: after_clause = { kw_after ~ name ~ ("," ~ nl* ~ name)* }
    after_clause: $ => seq(
      'after',
      field('stage', $.identifier),
      repeat(seq(',', repeat($._newline), field('stage', $.identifier))),
    ),

    // pest: uses_clause = { kw_uses ~ name }
    uses_clause: $ => seq('uses', field('template', $.identifier)),

    // pest: when_clause = { kw_when ~ expr }
    when_clause: $ => seq('when', field('condition', $._expression)),

    // ------------------------------------------------------------ settings

    // pest: block = { "{" ~ nl* ~ (setting ~ (nl+ | &"}"))* ~ "}" }
    block: $ => seq(
      '{',
      repeat($._newline),
      repeat(seq($.setting, repeat1($._newline))),
      optional($.setting),
      '}',
    ),

    // pest: setting = { key ~ (value ~ (","? ~ value)*)? ~ assign? ~ block? }
    //       assign  = { "=" ~ nl* ~ value }
    setting: $ => seq(
      field('key', $.identifier),
      optional(seq(
        field('argument', $._value),
        repeat(seq(optional(','), field('argument', $._value))),
      )),
      optional(seq('=', repeat($._newline), field('value', $._value))),
      optional(field('body', $.block)),
    ),

    // pest: value = string | list | duration | number | boolean | word
    _value: $ => choice(
      $.string,
      $.triple_string,
      $.list,
      $.duration,
      $.integer,
      $.boolean,
      alias($.identifier, $.word),
    ),

    // pest: list = { "[" ~ nl* ~ (value ~ nl* ~ ("," ~ nl* ~ value ~ nl*)*
    //                ~ ("," ~ nl*)?)? ~ "]" }
    list: $ => seq(
      '[',
      repeat($._newline),
      optional(seq(
        $._value,
        repeat($._newline),
        repeat(seq(',', repeat($._newline), $._value, repeat($._newline))),
        optional(seq(',', repeat($._newline))),
      )),
      ']',
    ),

    // pest: boolean = @{ ("true" | "false") ~ !ident_char }
    boolean: _ => choice('true', 'false'),

    // pest: name, key, word = @{ ident }
    identifier: _ => IDENT,

    // ------------------------------------------------------------ strings

    // pest: plain_string = ${ "\"" ~ (interp | escape | plain_text)* ~ "\"" }
    string: $ => seq(
      '"',
      optional(alias($._string_parts, $.string_content)),
      '"',
    ),

    _string_parts: $ => repeat1(choice(
      $._string_text,
      $.escape_sequence,
      $.interpolation,
    )),

    // pest: escape = @{ "\\" ~ (!NEWLINE ~ ANY) }. Which escapes are valid is
    // `slipway check`'s business (slipway::bad-string), as in pest.
    escape_sequence: _ => token.immediate(/\\[^\r\n]/),

    // pest: interp = ${ "${" ~ interp_body ~ "}" }
    interpolation: $ => seq(
      '${',
      optional(alias($._reference_text, $.reference)),
      '}',
    ),

    // pest: triple_string = ${ "\"\"\"" ~ (interp_raw | triple_text)* ~ "\"\"\"" }
    triple_string: $ => seq(
      '"""',
      optional(alias($._triple_string_parts, $.string_content)),
      '"""',
    ),

    _triple_string_parts: $ => repeat1(choice(
      $._triple_text,
      alias($._triple_interpolation, $.interpolation),
    )),

    // pest: interp_raw = ${ "${" ~ interp_raw_body ~ "}" }
    _triple_interpolation: $ => seq(
      '${',
      optional(alias($._triple_reference_text, $.reference)),
      '}',
    ),

    // pest: NEWLINE = "\n" | "\r\n" | "\r". An anonymous node rather than a
    // hidden one, so that a missing line end (two settings on one line)
    // shows as `(MISSING "\n")` in the tree, where tools look for errors.
    _newline: _ => alias(/\r?\n|\r/, '\n'),

    // ------------------------------------------------------------ conditions

    // pest: expr = { or_expr }
    _expression: $ => choice($.binary_expression, $._unary),

    // pest: or_expr  = { and_expr ~ (or_op ~ nl* ~ and_expr)* }
    //       and_expr = { unary ~ (and_op ~ nl* ~ unary)* }
    binary_expression: $ => choice(
      prec.left(PREC.or, seq(
        field('left', $._expression),
        field('operator', '||'),
        repeat($._newline),
        field('right', $._expression),
      )),
      prec.left(PREC.and, seq(
        field('left', $._expression),
        field('operator', '&&'),
        repeat($._newline),
        field('right', $._expression),
      )),
    ),

    // pest: unary = { not_op* ~ primary }, not_op = { "!" ~ !"=" }
    _unary: $ => choice($.unary_expression, $._primary),

    unary_expression: $ => seq(
      field('operator', '!'),
      field('operand', $._unary),
    ),

    // pest: primary = _{ group | comparison }
    _primary: $ => choice(
      $.parenthesized_expression,
      $.comparison,
      $._operand,
    ),

    // pest: group = { "(" ~ nl* ~ expr ~ nl* ~ ")" }
    parenthesized_expression: $ => seq(
      '(',
      repeat($._newline),
      $._expression,
      repeat($._newline),
      ')',
    ),

    // pest: comparison = { operand ~ (cmp_op ~ operand)? },
    //       cmp_op = { "==" | "!=" | "=~" }
    comparison: $ => seq(
      field('left', $._operand),
      field('operator', choice('==', '!=', '=~')),
      field('right', $._operand),
    ),

    // pest: operand = _{ string | call | boolean | path }
    _operand: $ => choice(
      $.string,
      $.triple_string,
      $.call,
      $.boolean,
      $.path,
    ),

    // pest: call = { name ~ "(" ~ (value ~ ("," ~ value)*)? ~ ")" }
    call: $ => seq(
      field('function', $.identifier),
      '(',
      optional(seq(
        field('argument', $._value),
        repeat(seq(',', field('argument', $._value))),
      )),
      ')',
    ),

    // pest: path = @{ ident ~ ("." ~ ident)* }
    path: $ => seq(
      $.identifier,
      repeat(seq(
        token.immediate('.'),
        alias(token.immediate(IDENT), $.identifier),
      )),
    ),
  },
});
