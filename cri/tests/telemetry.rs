//! End-to-end: the Prometheus endpoint and the OpenTelemetry traces of a real daemon.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::containers::setup_configured;
use k8s_cri::v1::{
    ContainerStatusRequest, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    VersionRequest,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A port nobody listens on now, for the daemon to bind.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn metrics_count_rpcs_and_show_what_runs() {
    let port = free_port();
    let mut s =
        setup_configured(48, Default::default(), |_| format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n")).await;
    let address = SocketAddr::from(([127, 0, 0, 1], port));

    for _ in 0..3 {
        s.client.runtime.version(VersionRequest::default()).await.unwrap();
    }
    let missing = ContainerStatusRequest { container_id: "nonesuch".into(), verbose: false };
    assert_eq!(s.client.runtime.container_status(missing).await.unwrap_err().code(), tonic::Code::NotFound);
    let sleeper = s.run(s.config("sleeper", &["sleep", "1000"])).await;
    s.create(s.config("idle", &["true"])).await.unwrap();

    let metrics = scrape(address).await;
    let value = |series: &str| metrics.get(series).copied().unwrap_or_else(|| panic!("no {series} in\n{metrics:#?}"));
    assert_eq!(value(r#"crisp_grpc_requests_total{method="Version",code="OK"}"#), 3.0);
    assert_eq!(value(r#"crisp_grpc_request_duration_seconds_count{method="Version",code="OK"}"#), 3.0);
    assert_eq!(value(r#"crisp_grpc_requests_total{method="ContainerStatus",code="NOT_FOUND"}"#), 1.0);
    assert_eq!(value(r#"crisp_grpc_requests_total{method="RunPodSandbox",code="OK"}"#), 1.0);
    assert_eq!(value(r#"crisp_grpc_requests_total{method="PullImage",code="OK"}"#), 1.0);
    assert_eq!(value("crisp_image_pulls_total"), 1.0);
    assert_eq!(value("crisp_image_pull_failures_total"), 0.0);
    assert_eq!(value("crisp_image_pull_duration_seconds_count"), 1.0);
    assert!(value("crisp_image_pull_bytes_total") > 0.0);
    assert_eq!(value(r#"crisp_cni_operation_duration_seconds_count{operation="ADD"}"#), 1.0);
    // The pause and the sleeper started; the idle one was only created (by its monitor).
    assert_eq!(value(r#"crisp_runtime_call_duration_seconds_count{handler="runc",command="start"}"#), 2.0);
    assert_eq!(value(r#"crisp_pods{state="ready"}"#), 1.0);
    assert_eq!(value(r#"crisp_pods{state="notready"}"#), 0.0);
    assert_eq!(value(r#"crisp_containers{state="running"}"#), 1.0);
    assert_eq!(value(r#"crisp_containers{state="created"}"#), 1.0);
    assert_eq!(value(r#"crisp_containers{state="exited"}"#), 0.0);
    assert_eq!(value("crisp_monitors_alive"), 1.0);
    assert_eq!(value("crisp_containers_oom_killed"), 0.0);
    assert!(value("crisp_process_resident_memory_bytes") > 1e6);
    assert!(value("crisp_process_open_fds") > 3.0);

    // Counted as they happen, read as they are.
    s.client.runtime.version(VersionRequest::default()).await.unwrap();
    s.client
        .runtime
        .stop_container(k8s_cri::v1::StopContainerRequest { container_id: sleeper, timeout: 0 })
        .await
        .unwrap();
    let metrics = scrape(address).await;
    assert_eq!(metrics[r#"crisp_grpc_requests_total{method="Version",code="OK"}"#], 4.0);
    assert_eq!(metrics[r#"crisp_containers{state="running"}"#], 0.0);
    assert_eq!(metrics[r#"crisp_containers{state="exited"}"#], 1.0);

    let (status, _, _) = get(address, "/other").await;
    assert_eq!(status, 404);
    s.teardown().await;
}

/// GETs `path` over plain HTTP/1.0: the status, the content type and the body.
async fn get(address: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).await.expect("connecting to the metrics address");
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a header and a body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let content_type = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-type")))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

async fn scrape(address: SocketAddr) -> BTreeMap<String, f64> {
    let (status, content_type, body) = get(address, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    parse_openmetrics(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// A strict reading of the OpenMetrics text format: every sample belongs to the family declared
/// last (its TYPE given), with a suffix its type allows; names and labels are well formed,
/// values are numbers, no series repeats, and `# EOF` ends it. Series are keyed as written.
fn parse_openmetrics(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut series = BTreeMap::new();
    let mut family: Option<(String, String)> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            return match lines.next() {
                None if text.ends_with("# EOF\n") => Ok(series),
                _ => Err("text after # EOF, or no newline after it".into()),
            };
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name, value) = (parts.next(), parts.next(), parts.next());
            let (Some(name), Some(value)) = (name, value) else { return Err(format!("bad comment line {line:?}")) };
            check_name(name)?;
            match keyword {
                Some("TYPE") => {
                    let known = ["counter", "gauge", "histogram", "summary", "info", "stateset", "unknown"];
                    if !known.contains(&value) {
                        return Err(format!("unknown type in {line:?}"));
                    }
                    family = Some((name.to_owned(), value.to_owned()));
                }
                Some("HELP") | Some("UNIT") => {
                    if family.as_ref().is_some_and(|(f, _)| f != name) {
                        family = None;
                    }
                    if keyword == Some("UNIT") && !name.ends_with(&format!("_{value}")) {
                        return Err(format!("{name} does not end with its unit {value}"));
                    }
                }
                _ => return Err(format!("unknown comment {line:?}")),
            }
            continue;
        }
        let (name_and_labels, value) = line.rsplit_once(' ').ok_or_else(|| format!("no value in {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
        };
        let name = match name_and_labels.split_once('{') {
            Some((name, labels)) => {
                check_labels(labels.strip_suffix('}').ok_or_else(|| format!("unclosed labels in {line:?}"))?)?;
                name
            }
            None => name_and_labels,
        };
        check_name(name)?;
        let (family_name, kind) = family.as_ref().ok_or_else(|| format!("{line:?} outside a declared family"))?;
        let suffix = name.strip_prefix(family_name.as_str()).ok_or_else(|| format!("{name} not in {family_name}"))?;
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            "summary" => &["", "_count", "_sum", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        if !allowed.contains(&suffix) {
            return Err(format!("{name} is no sample of the {kind} {family_name}"));
        }
        if series.insert(name_and_labels.to_owned(), value).is_some() {
            return Err(format!("{name_and_labels} twice"));
        }
    }
    Err("no # EOF".into())
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

/// `name="value",...` with `\\`, `\"` and `\n` the only escapes.
fn check_labels(mut labels: &str) -> Result<(), String> {
    while !labels.is_empty() {
        let (name, rest) = labels.split_once("=\"").ok_or_else(|| format!("bad label in {labels:?}"))?;
        check_name(name).map_err(|e| format!("label: {e}"))?;
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => return Err(format!("bad escape in {rest:?}")),
                },
                Some((i, '"')) => break i,
                Some(_) => {}
                None => return Err(format!("unterminated label value {rest:?}")),
            }
        };
        labels = &rest[end + 1..];
        if !labels.is_empty() {
            labels = labels.strip_prefix(',').ok_or_else(|| format!("no comma before {labels:?}"))?;
        }
    }
    Ok(())
}

/// An OTLP/gRPC collector keeping every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_traced_rpc_exports_its_span_with_cni_and_runtime_children() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_address = listener.local_addr().unwrap();
    let collector = Collector::default();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // No trace of the daemon's own making is kept: only the caller's sampled one below.
    let mut s = setup_configured(49, Default::default(), |_| {
        format!("[tracing]\nendpoint = \"http://{collector_address}\"\nsampling_rate = 0.0\n")
    })
    .await;

    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "traced".into(),
            uid: "traced-uid".into(),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        log_directory: s.lab.path("logs").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let mut request =
        tonic::Request::new(RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() });
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    let traced_pod = match s.client.runtime.run_pod_sandbox(request).await {
        Ok(r) => r.into_inner().pod_sandbox_id,
        Err(e) => panic!("RunPodSandbox: {e}\n{}", s.daemon.logs()),
    };

    // The exporter sends in batches, every few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (rpc, spans) = loop {
        let spans = collector.0.lock().unwrap().clone();
        if let Some(rpc) = spans.iter().find(|s| s.name == "RunPodSandbox") {
            let rpc = rpc.clone();
            let children =
                |name: &str| spans.iter().filter(|s| s.name == name && s.parent_span_id == rpc.span_id).count();
            if children("cni") > 0 && children("runtime") > 0 {
                break (rpc, spans);
            }
        }
        assert!(Instant::now() < deadline, "no complete trace within 30 s: {spans:#?}\n{}", s.daemon.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(hex(&rpc.trace_id), TRACE_ID);
    assert_eq!(hex(&rpc.parent_span_id), PARENT_SPAN_ID, "the caller's span is the RPC span's parent");
    assert_eq!(attribute(&rpc, "rpc.system").as_deref(), Some("grpc"));
    let cni = spans.iter().find(|s| s.name == "cni" && s.parent_span_id == rpc.span_id).unwrap();
    assert_eq!(attribute(cni, "operation").as_deref(), Some("ADD"));
    let runtime = spans.iter().find(|s| s.name == "runtime" && s.parent_span_id == rpc.span_id).unwrap();
    assert_eq!(attribute(runtime, "command").as_deref(), Some("start"));
    // Sampling rate 0: the setup's pull and pod, sent without a traceparent, left no spans.
    let foreign: Vec<_> = spans.iter().filter(|s| hex(&s.trace_id) != TRACE_ID).map(|s| &s.name).collect();
    assert!(foreign.is_empty(), "spans of other traces: {foreign:?}");

    s.client.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: traced_pod }).await.unwrap();
    s.teardown().await;
    server.abort();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    })
}
