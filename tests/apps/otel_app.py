"""A WSGI app instrumented with the OpenTelemetry SDK: it continues the trace the
gateway hands over in HTTP_TRACEPARENT and exports its own span to APP_OTLP_HTTP."""

import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

provider = TracerProvider(resource=Resource.create({"service.name": "python-app"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=os.environ["APP_OTLP_HTTP"])))
tracer = provider.get_tracer("otel_app")


def application(environ, start_response):
    carrier = {"traceparent": environ.get("HTTP_TRACEPARENT", "")}
    context = TraceContextTextMapPropagator().extract(carrier)
    with tracer.start_as_current_span("app work", context=context):
        body = b"traced"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
