//! Environment expansion of the raw config text, as LiteFS's `ExpandEnv`:
//! Go's `os.Expand` with a mapping that also evaluates `==`/`!=`
//! expressions.

/// Expands environment variables in `text` with the process environment.
/// See [`expand_env_with`] for the exact rules.
pub(crate) fn expand_env(text: &str) -> String {
    expand_env_with(text, &process_env)
}

/// A variable from the process environment; names the OS cannot hold (empty,
/// or containing `=` or NUL) are unset, and a non-UTF-8 value is converted
/// lossily.
fn process_env(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Expands `text` as LiteFS v0.5.14 does (Go's `os.Expand` plus LiteFS's
/// mapping), looking variables up with `get` (`None` = unset = empty):
///
/// - `$NAME` (the longest run of `[A-Za-z0-9_]`) and `${NAME}` expand to the
///   variable's value; an unset variable expands to nothing.
/// - Inside `${...}` (up to the first `}`) surrounding whitespace is
///   ignored, and `${ A == 'x' }`, `${ A != 'x' }` (also with `"x"`) compare
///   variable `A` with the literal, `${ A == B }`/`${ A != B }` compare two
///   variables; each expands to `true` or `false`. `A` and `B` are
///   `[A-Za-z0-9_]+`; the literal is everything between the first quote after
///   the operator and the final quote, and cannot span lines. Anything else
///   inside the braces is looked up as a variable name (so it is usually
///   empty).
///
/// Edge cases, all as in Go:
/// - `$` followed by a shell special character (`$$`, `$*`, `$#`, `$@`,
///   `$!`, `$?`, `$-`, `$0`..`$9`) is a variable of that one-character name,
///   which is never set: **`$$` expands to nothing, not to `$`**, and
///   `$1abc` gives `abc`. There is no escape for a literal `$` before a name;
///   pass such text in a variable, or use `-no-expand-env`.
/// - `$` followed by anything else that is not a name (a space, `/`, `.`, a
///   quote, end of text) is kept as it is: `cost: 5$` and `a $ b` are
///   unchanged.
/// - `${}` is removed; `${` without a closing `}` is removed and the rest of
///   the text is kept.
/// - A `}` ends the expression even inside quotes: `${ A == '}' }` does not
///   work.
/// - Expansion runs over the whole text, comments included, before YAML
///   parsing, so a value can inject YAML syntax.
pub(crate) fn expand_env_with(text: &str, get: &dyn Fn(&str) -> Option<String>) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // `lit` is the start of literal text not yet copied to `out`.
    let (mut lit, mut j) = (0, 0);
    while j < b.len() {
        if b[j] != b'$' || j + 1 >= b.len() {
            j += 1;
            continue;
        }
        out.push_str(&text[lit..j]);
        let (name, width) = shell_name(&text[j + 1..]);
        match name {
            None if width > 0 => {} // bad syntax: eat the characters
            None => out.push('$'),  // `$` not followed by a name: keep it
            Some(name) => out.push_str(&lookup(name, get)),
        }
        j += 1 + width;
        lit = j;
    }
    out.push_str(&text[lit..]);
    out
}

/// Go's `getShellName`: the name after a `$` (if any) and how many bytes of
/// `s` it spans, including braces.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let b = s.as_bytes();
    if b[0] == b'{' {
        if b.len() > 2 && is_shell_special(b[1]) && b[2] == b'}' {
            return (Some(&s[1..2]), 3);
        }
        return match s[1..].find('}') {
            Some(0) => (None, 2), // "${}": eat it
            Some(i) => (Some(&s[1..1 + i]), i + 2),
            None => (None, 1), // "${" without "}": eat "${"
        };
    }
    if is_shell_special(b[0]) {
        return (Some(&s[..1]), 1);
    }
    let n = b.iter().take_while(|c| is_word(**c)).count();
    if n == 0 {
        (None, 0)
    } else {
        (Some(&s[..n]), n)
    }
}

/// Go's `isShellSpecialVar`: a one-character variable name after `$`.
fn is_shell_special(c: u8) -> bool {
    matches!(
        c,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

/// Go regexp's `\w`.
fn is_word(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// Go regexp's `\s`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// LiteFS's mapping function: trim, try the three expression forms, else
/// look the text up as a variable name.
fn lookup(name: &str, get: &dyn Fn(&str) -> Option<String>) -> String {
    let v = name.trim();
    match expression(v, get) {
        Some(result) => result.to_string(),
        None => get(v).unwrap_or_default(),
    }
}

/// Evaluates `^(\w+)\s*(==|!=)\s*('(.*)'|"(.*)"|(\w+))$` (LiteFS's three
/// regular expressions), or `None` when `v` is not of that form.
fn expression(v: &str, get: &dyn Fn(&str) -> Option<String>) -> Option<bool> {
    let n = v.bytes().take_while(|c| is_word(*c)).count();
    if n == 0 {
        return None;
    }
    let (lhs, rest) = v.split_at(n);
    let rest = rest.trim_start_matches(is_re_space);
    let (eq, rest) = if let Some(r) = rest.strip_prefix("==") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("!=") {
        (false, r)
    } else {
        return None;
    };
    let rest = rest.trim_start_matches(is_re_space);
    let rhs = if let Some(lit) = quoted(rest, '\'').or_else(|| quoted(rest, '"')) {
        lit.to_owned()
    } else if !rest.is_empty() && rest.bytes().all(is_word) {
        get(rest).unwrap_or_default()
    } else {
        return None;
    };
    let same = get(lhs).unwrap_or_default() == rhs;
    Some(same == eq)
}

/// The text between an opening quote `q` at the start of `s` and a closing
/// one at its end (Go's `q(.*)q$`: `.` does not match a newline).
fn quoted(s: &str, q: char) -> Option<&str> {
    let inner = s.strip_prefix(q)?.strip_suffix(q)?;
    (!inner.contains('\n')).then_some(inner)
}
