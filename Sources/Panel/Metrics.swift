/// HTTP metrics in Prometheus text format: requests by route and status,
/// and a latency histogram.
final class HTTPMetrics: @unchecked Sendable {
    static let buckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    private let lock = Lock()
    private var requests: [String: [Int: Int]] = [:]
    private var bucketCounts = [Int](repeating: 0, count: HTTPMetrics.buckets.count)
    private var count = 0
    private var sum = 0.0
    private var inFlightUploads = 0
    private var uploadedBytes: Int64 = 0

    func record(route: String, status: Int, seconds: Double) {
        lock.withLock {
            requests[route, default: [:]][status, default: 0] += 1
            count += 1
            sum += seconds
            for (i, b) in HTTPMetrics.buckets.enumerated() where seconds <= b { bucketCounts[i] += 1 }
        }
    }

    func addUploaded(_ n: Int) { lock.withLock { uploadedBytes += Int64(n) } }

    func render() -> String {
        lock.withLock {
            var out = "# HELP cloudbios_http_requests_total HTTP requests by route and status.\n"
            out += "# TYPE cloudbios_http_requests_total counter\n"
            for route in requests.keys.sorted() {
                for (status, n) in requests[route]!.sorted(by: { $0.key < $1.key }) {
                    out += "cloudbios_http_requests_total{route=\"\(route)\",status=\"\(status)\"} \(n)\n"
                }
            }
            out += "# HELP cloudbios_http_request_duration_seconds Time from request headers to response completion.\n"
            out += "# TYPE cloudbios_http_request_duration_seconds histogram\n"
            for (i, b) in HTTPMetrics.buckets.enumerated() {
                out += "cloudbios_http_request_duration_seconds_bucket{le=\"\(b)\"} \(bucketCounts[i])\n"
            }
            out += "cloudbios_http_request_duration_seconds_bucket{le=\"+Inf\"} \(count)\n"
            out += "cloudbios_http_request_duration_seconds_sum \(sum)\n"
            out += "cloudbios_http_request_duration_seconds_count \(count)\n"
            out += "# HELP cloudbios_http_upload_bytes_total Bytes received into the image store.\n"
            out += "# TYPE cloudbios_http_upload_bytes_total counter\n"
            out += "cloudbios_http_upload_bytes_total \(uploadedBytes)\n"
            return out
        }
    }
}
