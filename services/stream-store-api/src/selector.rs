//! Kubernetes label selectors (`labels.Parse`): parsing the text form and
//! matching a label set.
//!
//! # Grammar
//!
//! A selector is a comma-separated list of requirements, all of which must
//! hold; the empty selector matches everything. Whitespace around tokens is
//! ignored.
//!
//! | form | matches when |
//! |---|---|
//! | `key=value`, `key==value` | the label is set to `value` (`key=` means the empty value) |
//! | `key!=value` | the label is absent or set to something else |
//! | `key in (v1,v2)` | the label is set to one of the values |
//! | `key notin (v1,v2)` | the label is absent or set to none of the values |
//! | `key` | the label is set (to anything) |
//! | `!key` | the label is absent |
//!
//! Keys are Kubernetes qualified names (`[prefix/]name`), values are label
//! values (at most 63 characters of `[A-Za-z0-9._-]`, starting and ending
//! alphanumeric). The numeric `gt`/`lt` operators of Kubernetes are not
//! supported and are reported as such.

use std::{collections::BTreeMap, fmt};

use imagestreams_common::error::ApiError;

/// The longest label name (the part after the optional prefix) and label value.
pub const MAX_LABEL_NAME_LENGTH: usize = 63;
/// The longest label key prefix (a DNS-1123 subdomain).
pub const MAX_LABEL_PREFIX_LENGTH: usize = 253;

/// Why a selector could not be parsed. The message reads like Kubernetes'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {message} (in {selector:?})")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong, e.g. `found ')', expected: identifier`.
    pub message: String,
}

/// How a requirement compares a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `=` / `==`: set to the one value.
    Equals,
    /// `!=`: absent or set to something else.
    NotEquals,
    /// `in (…)`: set to one of the values.
    In,
    /// `notin (…)`: absent or set to none of the values.
    NotIn,
    /// `key`: set.
    Exists,
    /// `!key`: absent.
    DoesNotExist,
}

/// One requirement on one label key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// The comparison.
    pub operator: Operator,
    /// The values (one for `=`/`!=`, several for `in`/`notin`, none otherwise).
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match self.operator {
            Operator::Equals => write!(f, "{key}={}", self.values[0]),
            Operator::NotEquals => write!(f, "{key}!={}", self.values[0]),
            Operator::In => write!(f, "{key} in ({})", self.values.join(",")),
            Operator::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// Parses the text form (see the module docs).
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let fail = |message: String| SelectorError {
            selector: text.to_owned(),
            message,
        };
        let tokens = lex(text).map_err(fail)?;
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if parser.peek() == &Token::End {
            return Ok(Selector { requirements });
        }
        loop {
            requirements.push(parser.requirement().map_err(fail)?);
            match parser.next() {
                Token::Comma => continue,
                Token::End => break,
                other => {
                    return Err(fail(format!(
                        "found '{other}', expected: ',' or end of string"
                    )));
                }
            }
        }
        Ok(Selector { requirements })
    }

    /// Whether the selector has no requirement (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, in the order given.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    /// The canonical text form, which parses back to an equal selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            r.fmt(f)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier(String),
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    Open,
    Close,
    Comma,
    Greater,
    Less,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Token::Identifier(s) => s,
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Bang => "!",
            Token::Open => "(",
            Token::Close => ")",
            Token::Comma => ",",
            Token::Greater => ">",
            Token::Less => "<",
            Token::End => "end of string",
        })
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '<' | '>')
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let next = chars.peek().map(|&(_, n)| n);
            let token = match (c, next) {
                ('=', Some('=')) => {
                    chars.next();
                    Token::DoubleEquals
                }
                ('!', Some('=')) => {
                    chars.next();
                    Token::NotEquals
                }
                ('=', _) => Token::Equals,
                ('!', _) => Token::Bang,
                ('(', _) => Token::Open,
                (')', _) => Token::Close,
                (',', _) => Token::Comma,
                ('>', _) => Token::Greater,
                _ => Token::Less,
            };
            tokens.push(token);
            continue;
        }
        let mut end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || is_special(c) {
                end = i;
                break;
            }
            chars.next();
        }
        let word = &text[start..end];
        tokens.push(match word {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier(word.to_owned()),
        });
    }
    tokens.push(Token::End);
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // can't go past the end: the last token is always `End`, never consumed twice
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = if self.peek() == &Token::Bang {
            self.next();
            true
        } else {
            false
        };
        let key = match self.next() {
            Token::Identifier(key) => key,
            other => return Err(format!("found '{other}', expected: identifier")),
        };
        check_key(&key)?;
        if negated {
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
                values: Vec::new(),
            });
        }
        let operator = match self.peek() {
            Token::Comma | Token::End => {
                return Ok(Requirement {
                    key,
                    operator: Operator::Exists,
                    values: Vec::new(),
                });
            }
            Token::Equals | Token::DoubleEquals => Operator::Equals,
            Token::NotEquals => Operator::NotEquals,
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Greater | Token::Less => {
                return Err(format!(
                    "operator '{}' (gt/lt) is not supported, only =, ==, !=, in, notin, exists and !",
                    self.peek()
                ));
            }
            other => {
                return Err(format!(
                    "found '{other}', expected: =, ==, !=, in, notin, ',' or end of string"
                ));
            }
        };
        self.next();
        let values = match operator {
            Operator::In | Operator::NotIn => self.set()?,
            _ => vec![self.single_value()?],
        };
        for value in &values {
            check_value(value)?;
        }
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The value after `=`, `==` or `!=`; absent means the empty value.
    fn single_value(&mut self) -> Result<String, String> {
        match self.peek() {
            Token::Comma | Token::End => Ok(String::new()),
            Token::Identifier(_) => match self.next() {
                Token::Identifier(v) => Ok(v),
                _ => unreachable!("peeked an identifier"),
            },
            // `in` and `notin` are plain values after an operator
            Token::In | Token::NotIn => Ok(self.next().to_string()),
            other => Err(format!("found '{other}', expected: identifier")),
        }
    }

    /// `( v1, v2, … )`; an empty element is the empty value, an empty set an error.
    fn set(&mut self) -> Result<Vec<String>, String> {
        match self.next() {
            Token::Open => {}
            other => return Err(format!("found '{other}', expected: '('")),
        }
        let mut values = Vec::new();
        if self.peek() == &Token::Close {
            return Err("for 'in', 'notin' operators, values set can't be empty".to_owned());
        }
        loop {
            let value = match self.peek() {
                Token::Comma | Token::Close => String::new(),
                Token::Identifier(_) | Token::In | Token::NotIn => self.next().to_string(),
                other => return Err(format!("found '{other}', expected: identifier")),
            };
            values.push(value);
            match self.next() {
                Token::Comma => continue,
                Token::Close => break,
                other => return Err(format!("found '{other}', expected: ',' or ')'")),
            }
        }
        Ok(values)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters, or empty.
fn label_name_problem(value: &str) -> Option<String> {
    if value.len() > MAX_LABEL_NAME_LENGTH {
        return Some(format!(
            "must be no more than {MAX_LABEL_NAME_LENGTH} characters"
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !value.is_empty()
        && (!value.chars().all(is_name_char)
            || !alnum(value.chars().next())
            || !alnum(value.chars().last()))
    {
        return Some(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
             with an alphanumeric character"
                .to_owned(),
        );
    }
    None
}

fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty()
            || prefix.len() > MAX_LABEL_PREFIX_LENGTH
            || !prefix.split('.').all(label_ok)
        {
            return Err(format!(
                "invalid label key {key:?}: prefix part must be a lowercase RFC 1123 subdomain"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!(
            "invalid label key {key:?}: name part must be non-empty"
        ));
    }
    if name.contains('/') {
        return Err(format!(
            "invalid label key {key:?}: a qualified name has at most one '/'"
        ));
    }
    match label_name_problem(name) {
        Some(problem) => Err(format!("invalid label key {key:?}: name part {problem}")),
        None => Ok(()),
    }
}

fn check_value(value: &str) -> Result<(), String> {
    match label_name_problem(value) {
        Some(problem) => Err(format!("invalid label value {value:?}: {problem}")),
        None => Ok(()),
    }
}

impl From<SelectorError> for ApiError {
    /// Always `Invalid`, naming the `labelSelector` parameter.
    fn from(error: SelectorError) -> Self {
        ApiError::invalid("labelSelector", format!("labelSelector: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_operator_matches_like_kubernetes() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("env", "")]);
        let db = labels(&[("app", "db")]);
        let none = labels(&[]);
        let cases: &[(&str, [bool; 3])] = &[
            ("", [true, true, true]),
            ("app=web", [true, false, false]),
            ("app==web", [true, false, false]),
            ("app!=web", [false, true, true]),
            ("app in (web, db)", [true, true, false]),
            ("app in (db)", [false, true, false]),
            ("app notin (web)", [false, true, true]),
            ("tier", [true, false, false]),
            ("!tier", [false, true, true]),
            ("env=", [true, false, false]),
            ("app=web,tier=front", [true, false, false]),
            ("app=web,!tier", [false, false, false]),
            ("  app = web ,  tier  ", [true, false, false]),
            ("app in (web,)", [true, false, false]),
            ("app=in", [false, false, false]),
            ("example.com/team", [false, false, false]),
        ];
        for (text, want) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got = [
                selector.matches(&web),
                selector.matches(&db),
                selector.matches(&none),
            ];
            assert_eq!(&got, want, "{text:?}");
        }
    }

    #[test]
    fn display_parses_back_to_the_same_selector() {
        for text in [
            "a=b",
            "a!=b",
            "a in (x,y),b notin (z),c,!d",
            "example.com/app=web",
            "a=",
        ] {
            let selector = Selector::parse(text).unwrap();
            let again = Selector::parse(&selector.to_string()).unwrap();
            assert_eq!(again, selector, "{text}");
        }
        assert_eq!(
            Selector::parse(" a == b , c in ( x , y ) ")
                .unwrap()
                .to_string(),
            "a=b,c in (x,y)"
        );
        assert!(Selector::parse("  ").unwrap().is_empty());
        assert_eq!(Selector::everything().requirements().len(), 0);
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        let cases = [
            ("a in (", "expected: identifier"),
            ("a in ()", "can't be empty"),
            ("a in x", "expected: '('"),
            ("a in (x", "expected: ',' or ')'"),
            ("=b", "expected: identifier"),
            ("a=b=c", "expected: ',' or end of string"),
            ("a,", "expected: identifier"),
            (",a", "expected: identifier"),
            ("a b", "expected: =, ==, !=, in, notin"),
            ("a>1", "not supported"),
            ("!a=b", "expected: ',' or end of string"),
            ("a=-b", "invalid label value"),
            ("a=b!", "expected: ',' or end of string"),
            ("-a", "invalid label key"),
            ("a/b/c", "at most one '/'"),
            ("Bad_Prefix/a", "prefix part"),
            ("/a", "prefix part"),
            ("a/", "name part must be non-empty"),
            ("a=b,c=d)", "expected: ',' or end of string"),
        ];
        for (text, want) in cases {
            let err = Selector::parse(text).expect_err(text);
            assert!(err.to_string().contains(want), "{text:?}: {err}");
            assert_eq!(err.selector, text);
        }
        let long = "v".repeat(64);
        let err = Selector::parse(&format!("a={long}")).unwrap_err();
        assert!(err.message.contains("no more than 63"), "{err}");
    }

    #[test]
    fn a_bad_selector_is_an_invalid_label_selector() {
        let error = ApiError::from(Selector::parse("a in (").unwrap_err());
        assert!(matches!(&error, ApiError::Invalid { field, .. } if field == "labelSelector"));
    }
}
