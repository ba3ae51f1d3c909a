//! The shape of an access record, as Python's startup check handed it over: uvicorn's line,
//! gunicorn's atoms (already split into literals and atoms), or JSON.

use http::HeaderName;

pub enum AccessFormat {
    /// `INFO:     client - "GET /path HTTP/1.1" 200 OK`, coloured as uvicorn does on a terminal.
    Uvicorn { colors: bool },
    /// `--access-log-format`: the record is the format with its atoms filled in.
    Atoms(Vec<Segment>),
    /// `--log-format json`; `message` is the `--access-log-format`, if one was given.
    Json { message: Option<Vec<Segment>> },
}

pub enum Segment {
    Literal(String),
    Atom(Atom),
}

/// gunicorn's atoms (`%(h)s` ...), those whose value is known only per request.
pub enum Atom {
    /// `h`: the client's address.
    Host,
    /// `u`: the user of Basic authentication.
    User,
    /// `t`: local time, `[02/Dec/2026:10:00:00 +0000]`.
    Time,
    /// `r`: the request line with the raw target.
    RequestLine,
    /// `m`
    Method,
    /// `U`: the decoded path.
    Path,
    /// `q`
    Query,
    /// `H`: `HTTP/1.1`.
    Protocol,
    /// `s`
    Status,
    /// `b`, `B`: response body bytes.
    Bytes,
    /// `T`, `D`, `M`, `L`: the duration in seconds, microseconds, milliseconds, `s.micros`.
    Seconds,
    Micros,
    Millis,
    SecondsMicros,
    /// `%({name}i)s`
    RequestHeader(HeaderName),
    /// `%({name}o)s`
    ResponseHeader(HeaderName),
}

impl Atom {
    /// The atom named `key` (`h`, `{user-agent}i`, ...); `None` for the ones Python resolves
    /// once (`l`, `p`, `{name}e`, unknown names).
    pub fn parse(key: &str) -> Option<Atom> {
        if let Some(inner) = key.strip_prefix('{') {
            let (name, kind) = inner.split_at(inner.len().checked_sub(2)?);
            let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?;
            return match kind {
                "}i" => Some(Atom::RequestHeader(name)),
                "}o" => Some(Atom::ResponseHeader(name)),
                _ => None,
            };
        }
        Some(match key {
            "h" => Atom::Host,
            "u" => Atom::User,
            "t" => Atom::Time,
            "r" => Atom::RequestLine,
            "m" => Atom::Method,
            "U" => Atom::Path,
            "q" => Atom::Query,
            "H" => Atom::Protocol,
            "s" => Atom::Status,
            "b" | "B" => Atom::Bytes,
            "f" => Atom::RequestHeader(http::header::REFERER),
            "a" => Atom::RequestHeader(http::header::USER_AGENT),
            "T" => Atom::Seconds,
            "D" => Atom::Micros,
            "M" => Atom::Millis,
            "L" => Atom::SecondsMicros,
            _ => return None,
        })
    }

    /// The request header this atom reads, if any.
    fn request_header(&self) -> Option<HeaderName> {
        match self {
            Atom::User => Some(http::header::AUTHORIZATION),
            Atom::RequestHeader(name) => Some(name.clone()),
            _ => None,
        }
    }
}

impl AccessFormat {
    fn segments(&self) -> &[Segment] {
        match self {
            AccessFormat::Uvicorn { .. } | AccessFormat::Json { message: None } => &[],
            AccessFormat::Atoms(segments)
            | AccessFormat::Json {
                message: Some(segments),
            } => segments,
        }
    }

    /// Every request header a record of this format reads, each once.
    pub fn request_headers(&self) -> Vec<HeaderName> {
        let mut names: Vec<HeaderName> = Vec::new();
        if matches!(self, AccessFormat::Json { .. }) {
            names.push(http::header::USER_AGENT);
            names.push(HeaderName::from_static("x-request-id"));
        }
        for segment in self.segments() {
            if let Segment::Atom(atom) = segment {
                if let Some(name) = atom.request_header() {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names
    }

    /// Every response header a record of this format reads, each once.
    pub fn response_headers(&self) -> Vec<HeaderName> {
        let mut names: Vec<HeaderName> = Vec::new();
        for segment in self.segments() {
            if let Segment::Atom(Atom::ResponseHeader(name)) = segment {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
    }
}
