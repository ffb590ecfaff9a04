//! Whether a response is compressed, and with which coding.

use http::{header, HeaderMap, StatusCode};

use super::Encoding;

/// The coding to use for `accept` (an `Accept-Encoding` value), honouring q-values,
/// `identity` and `*`; ties go to the server's order.
pub fn negotiate(accept: &str, offered: &[Encoding]) -> Option<Encoding> {
    let mut best: Option<(f32, usize, Encoding)> = None;
    let mut wildcard: Option<f32> = None;
    let mut listed = Vec::new();
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        if token == "*" {
            wildcard = Some(q);
            continue;
        }
        listed.push(token.clone());
        if let Some((rank, encoding)) = offered.iter().enumerate().find(|(_, e)| e.token() == token)
        {
            consider(&mut best, q, rank, *encoding);
        }
    }
    if let Some(q) = wildcard {
        for (rank, encoding) in offered.iter().enumerate() {
            if !listed.iter().any(|t| t == encoding.token()) {
                consider(&mut best, q, rank, *encoding);
            }
        }
    }
    best.map(|(_, _, encoding)| encoding)
}

fn consider(best: &mut Option<(f32, usize, Encoding)>, q: f32, rank: usize, encoding: Encoding) {
    if q <= 0.0 {
        return;
    }
    let better = match best {
        None => true,
        Some((best_q, best_rank, _)) => q > *best_q || (q == *best_q && rank < *best_rank),
    };
    if better {
        *best = Some((q, rank, encoding));
    }
}

/// True when the response is of a kind that compression helps: it has (or, for HEAD,
/// would have) a body, is not encoded or ranged already, allows transformation, and
/// is not a media type that is compressed already or must stream unbuffered.
pub(super) fn compressible(status: StatusCode, headers: &HeaderMap) -> bool {
    if status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
        || headers.contains_key(header::CONTENT_ENCODING)
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    let no_transform = headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("no-transform"))
    });
    if no_transform {
        return false;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    compressible_media_type(content_type)
}

/// False for media types that are compressed already (images but SVG, audio, video,
/// archives, woff fonts, PDF, `application/octet-stream`) or streamed as events; the
/// static files layer uses the same rule for the variants it compresses once.
pub fn compressible_media_type(content_type: &str) -> bool {
    let content_type = content_type.to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let precompressed = (essence.starts_with("image/") && essence != "image/svg+xml")
        || essence.starts_with("video/")
        || essence.starts_with("audio/")
        || matches!(
            essence,
            "text/event-stream"
                | "application/zip"
                | "application/gzip"
                | "application/x-gzip"
                | "application/zstd"
                | "application/x-brotli"
                | "application/pdf"
                | "application/octet-stream"
                | "application/grpc"
                | "font/woff"
                | "font/woff2"
        );
    !precompressed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_with_q_values() {
        let all = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];
        assert_eq!(negotiate("gzip", &all), Some(Encoding::Gzip));
        assert_eq!(negotiate("gzip, br", &all), Some(Encoding::Brotli));
        assert_eq!(
            negotiate("gzip;q=1.0, br;q=0.5", &all),
            Some(Encoding::Gzip)
        );
        assert_eq!(negotiate("br;q=0, gzip;q=0.1", &all), Some(Encoding::Gzip));
        assert_eq!(negotiate("identity", &all), None);
        assert_eq!(negotiate("*", &all), Some(Encoding::Brotli));
        assert_eq!(negotiate("*;q=0.5, br;q=0", &all), Some(Encoding::Zstd));
        assert_eq!(negotiate("deflate", &all), None);
        assert_eq!(negotiate("gzip", &[Encoding::Zstd]), None);
    }
}
