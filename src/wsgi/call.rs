//! Running one request through the application on a Python thread.
//!
//! `app(environ, start_response)` is called, the returned iterable is driven chunk by
//! chunk into the response, and its `close()` is called exactly once whatever happens:
//! normal end, an exception while iterating, the client going away, or a panic on the
//! way (then the client gets a 500, or a cut body).

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use http::{header, HeaderValue, StatusCode};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::body::{file_body, WsgiBody};
use super::file_wrapper::FileWrapper;
use super::input::{BodyFault, InputLimits, WsgiInput};
use super::interpreter::format_exception;
use super::iterable::{chunk_bytes, Iterable};
use super::pool::{AppContext, Job};
use super::response::{ResponseContext, SendStop, StartResponse};

/// Serve `job` with the application. Never panics on application misbehaviour: every
/// failure becomes a logged traceback and a 500 (or a cut connection once the head has
/// been sent).
pub(super) fn run(py: Python<'_>, context: &AppContext, job: Job) {
    let Job {
        head,
        input,
        reply,
        span,
        ticket: _,
    } = job;
    super::bridge::clear_reported_upstream();
    // The outermost Python segment's span: a child of the request's, current on this
    // thread while the segment runs, iterates and closes.
    let app_span = span.as_ref().map(|parent| {
        super::traced::segment_span(parent, "python segment", &context.first_segment)
    });
    let _in_app_span = app_span.as_ref().map(tracing::Span::enter);
    let body_fault = Arc::new(OnceLock::new());
    let responder = StartResponse::new(
        ResponseContext {
            method: head.method.clone(),
            runtime: context.runtime.clone(),
            write_timeout: context.write_timeout,
        },
        reply,
    );
    let responder = match Bound::new(py, responder) {
        Ok(responder) => responder,
        Err(error) => {
            tracing::error!("cannot create start_response: {error}");
            return;
        }
    };
    // Whatever happens below, a panic included, the response ends: a 500 if nothing
    // was sent, a cut body otherwise.
    let _ends = EndsResponse(&responder);
    let input = WsgiInput::new(
        input,
        context.runtime.clone(),
        InputLimits {
            max_body_size: context.max_body_size,
            read_timeout: context.read_timeout,
            min_rate: context.min_body_rate,
            fault: body_fault.clone(),
        },
    );
    let request_line = || format!("{} {}", head.method, head.uri);
    let environ =
        Bound::new(py, input).and_then(|input| context.environ.build(py, &head, input.into_any()));
    let environ = environ.and_then(|environ| {
        if let Some(app_span) = &app_span {
            set_trace_context(&environ, app_span)?;
        }
        Ok(environ)
    });
    let environ = match environ {
        Ok(environ) => environ,
        Err(error) => {
            tracing::error!(request = %request_line(), "cannot build the environ: {}", format_exception(py, &error));
            responder.get().fail(py, StatusCode::INTERNAL_SERVER_ERROR);
            return;
        }
    };

    let iterable = match context.app.bind(py).call1((environ, &responder)) {
        Ok(iterable) => Iterable::new(iterable),
        Err(error) => {
            fail(py, &responder, &error, &body_fault, &request_line());
            return;
        }
    };
    let outcome = drive(py, context, iterable.get(), &responder);
    let closed = iterable.close();
    match (outcome, closed) {
        (Ok(()), Ok(())) => {}
        (Err(error), closed) => {
            fail(py, &responder, &error, &body_fault, &request_line());
            if let Err(close_error) = closed {
                tracing::error!(
                    target: "wsgi_gateway::app",
                    request = %request_line(),
                    "close() of the response iterable failed too:\n{}",
                    format_exception(py, &close_error)
                );
            }
        }
        (Ok(()), Err(close_error)) => {
            fail(py, &responder, &close_error, &body_fault, &request_line());
        }
    }
}

/// Hand the application span's W3C context to the app (`HTTP_TRACEPARENT`, and
/// `HTTP_TRACESTATE` when there is one), replacing what the client sent, so an app
/// instrumented with the OpenTelemetry SDK continues the gateway's trace.
pub(super) fn set_trace_context(
    environ: &Bound<'_, pyo3::types::PyDict>,
    span: &tracing::Span,
) -> PyResult<()> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let mut carrier = std::collections::HashMap::new();
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier)
    });
    for (key, name) in [
        ("traceparent", "HTTP_TRACEPARENT"),
        ("tracestate", "HTTP_TRACESTATE"),
    ] {
        match carrier.get(key).filter(|v| !v.is_empty()) {
            Some(value) => environ.set_item(name, value.as_str())?,
            None => {
                if environ.contains(name)? {
                    environ.del_item(name)?;
                }
            }
        }
    }
    Ok(())
}

/// Ends the response when dropped, unless it has ended already.
struct EndsResponse<'a, 'py>(&'a Bound<'py, StartResponse>);

impl Drop for EndsResponse<'_, '_> {
    fn drop(&mut self) {
        self.0.get().fail_unless_ended(self.0.py());
    }
}

/// Log an application error and answer 500 or, if the head is already out, abort the
/// body. When the error comes from a request body that could not be read, the client is
/// to blame: 413 (over the body limit) or 400 and a closed connection (malformed), no
/// traceback.
fn fail(
    py: Python<'_>,
    responder: &Bound<'_, StartResponse>,
    error: &PyErr,
    body_fault: &OnceLock<BodyFault>,
    request_line: &str,
) {
    match body_fault.get() {
        Some(BodyFault::TooLarge { .. }) => {
            tracing::warn!(request = %request_line, "request body over limits.max_body_size: 413");
            responder.get().fail(py, StatusCode::PAYLOAD_TOO_LARGE);
            return;
        }
        Some(BodyFault::Malformed { reason }) => {
            tracing::info!(request = %request_line, "malformed request body ({reason}): 400");
            responder.get().fail(py, StatusCode::BAD_REQUEST);
            return;
        }
        Some(BodyFault::TooSlow { reason }) => {
            tracing::info!(request = %request_line, "request body too slow ({reason}): 408");
            responder.get().fail(py, StatusCode::REQUEST_TIMEOUT);
            return;
        }
        None => {}
    }
    let responder = responder.get();
    if error.is_instance_of::<pyo3::exceptions::PyConnectionAbortedError>(py)
        && responder.headers_sent(py)
    {
        tracing::debug!(request = %request_line, "client went away during the response");
        responder.fail(py, StatusCode::INTERNAL_SERVER_ERROR);
        return;
    }
    tracing::error!(
        target: "wsgi_gateway::app",
        request = %request_line,
        "application error:\n{}",
        format_exception(py, error)
    );
    responder.fail(py, StatusCode::INTERNAL_SERVER_ERROR);
}

/// Move the iterable's output into the response.
fn drive(
    py: Python<'_>,
    context: &AppContext,
    iterable: &Bound<'_, PyAny>,
    responder: &Bound<'_, StartResponse>,
) -> PyResult<()> {
    let responder = responder.get();
    if !responder.headers_sent(py) {
        // Fast path: a list or tuple is complete already; answer with a known length.
        if let Some(items) = sequence_items(iterable) {
            let mut body = BytesMut::new();
            for item in items.iter() {
                body.extend_from_slice(chunk_bytes(item)?.as_bytes());
            }
            return responder.finish(py, Some(body.freeze()));
        }
        // A real file: stream it from the runtime instead of iterating in Python.
        if let Ok(wrapper) = iterable.cast::<FileWrapper>() {
            if let Some(file) = wrapper.borrow().real_file(py) {
                return send_file(py, context, responder, file);
            }
        }
    }
    for item in iterable.try_iter()? {
        let item = item?;
        let chunk = chunk_bytes(&item)?;
        match responder.send_chunk(py, chunk.as_bytes())? {
            Ok(()) => {}
            Err(SendStop::LengthReached) | Err(SendStop::ClientGone) => break,
        }
    }
    responder.finish(py, None)
}

fn sequence_items<'py>(iterable: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = iterable.cast::<PyList>() {
        return Some(list.iter().collect());
    }
    if let Ok(tuple) = iterable.cast::<PyTuple>() {
        return Some(tuple.iter().collect());
    }
    None
}

fn send_file(
    py: Python<'_>,
    context: &AppContext,
    responder: &StartResponse,
    file: super::file_wrapper::RealFile,
) -> PyResult<()> {
    responder.finish_with(py, |head, body_allowed| {
        let len = match head.content_length {
            Some(declared) => declared.min(file.len),
            None => {
                head.headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(file.len));
                file.len
            }
        };
        if head
            .content_length
            .is_some_and(|declared| declared > file.len)
        {
            tracing::warn!("the file is shorter than the application's Content-Length");
        }
        if !body_allowed {
            return WsgiBody::empty();
        }
        file_body(
            &context.runtime,
            file.file,
            file.offset,
            len,
            context.write_timeout,
        )
    })
}
