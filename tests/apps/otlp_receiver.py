"""A minimal OTLP receiver for the tests, on the official opentelemetry-proto package:
gRPC (TraceService/Export, MetricsService/Export) and HTTP/protobuf (POST /v1/traces,
POST /v1/metrics) on free ports.

Every span received is appended to the file named by argv[1] as one JSON line, every
metric data point to the file named by argv[2]. The ports are printed as
"GRPC_PORT=... HTTP_PORT=..." once both listen.
"""

import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

OUT = sys.argv[1]
METRICS_OUT = sys.argv[2]
LOCK = threading.Lock()


def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def record(request):
    lines = []
    for resource_spans in request.resource_spans:
        resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                lines.append(json.dumps({
                    "service": resource.get("service.name"),
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": span.kind,
                    "attributes": {a.key: value(a.value) for a in span.attributes},
                }))
    with LOCK, open(OUT, "a") as f:
        for line in lines:
            f.write(line + "\n")


def record_metrics(request):
    lines = []
    for resource_metrics in request.resource_metrics:
        resource = {a.key: value(a.value) for a in resource_metrics.resource.attributes}
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                data = getattr(metric, kind)
                for point in data.data_points:
                    line = {
                        "service": resource.get("service.name"),
                        "scope": scope_metrics.scope.name,
                        "name": metric.name,
                        "unit": metric.unit,
                        "kind": kind,
                        "temporality": getattr(data, "aggregation_temporality", None),
                        "monotonic": getattr(data, "is_monotonic", None),
                        "attributes": {a.key: value(a.value) for a in point.attributes},
                        "start": point.start_time_unix_nano,
                        "time": point.time_unix_nano,
                    }
                    if kind == "histogram":
                        line.update(count=point.count, sum=point.sum,
                                    buckets=list(point.bucket_counts),
                                    bounds=list(point.explicit_bounds))
                    else:
                        line["value"] = getattr(point, point.WhichOneof("value"))
                    lines.append(json.dumps(line))
    with LOCK, open(METRICS_OUT, "a") as f:
        for line in lines:
            f.write(line + "\n")


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        record_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        record(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class HttpHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/metrics":
            request = metrics_service_pb2.ExportMetricsServiceRequest()
            request.ParseFromString(body)
            record_metrics(request)
            reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        elif self.path == "/v1/traces":
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            record(request)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), HttpHandler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(f"GRPC_PORT={grpc_port} HTTP_PORT={http.server_address[1]}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
