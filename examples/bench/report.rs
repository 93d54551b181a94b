//! The results: the `Figure` rows every section pushes, the statistics
//! they are made of (percentiles, milliseconds), and the output of a run:
//! the printed table, the JSON and CSV files, and the SVG plot of latency
//! against concurrency.

use std::fmt::Write as _;
use std::time::Duration;

/// One row of the results table.
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub p50: f64,
    pub p95: f64,
    pub reference: String,
    pub ref_p50: f64,
    /// Ratio as "better when above 1" or "better when below 1".
    pub higher_is_better: bool,
}

impl Figure {
    fn ratio(&self) -> f64 {
        if self.ref_p50 == 0.0 {
            f64::NAN
        } else {
            self.p50 / self.ref_p50
        }
    }
}

/// The sample at fraction `p` of the sorted samples (0.5: the median);
/// NaN when there are none.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let idx = ((v.len() - 1) as f64 * p).round() as usize;
    v[idx]
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The machine the run measured, for the head of the table.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}, PostgreSQL 15")
}

/// Prints the table and writes the JSON, CSV and SVG files to `out_dir`
/// (the SVG only when there are plot points).
pub fn report(figures: &[Figure], plot: &[PlotPoint], out_dir: &std::path::Path) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut table = String::new();
    let _ = writeln!(table, "machine: {}", machine());
    let _ = writeln!(
        table,
        "| figure | p50 | p95 (rates: p5) | reference | reference p50 | ratio |"
    );
    let _ = writeln!(table, "|---|---:|---:|---|---:|---:|");
    let mut csv =
        String::from("figure,unit,p50,p95,reference,reference_p50,ratio,higher_is_better\n");
    let mut json = Vec::new();
    for f in figures {
        let ratio = f.ratio();
        let _ = writeln!(
            table,
            "| {} | {:.2} {} | {:.2} | {} | {:.2} | {} |",
            f.name,
            f.p50,
            f.unit,
            f.p95,
            f.reference,
            f.ref_p50,
            if ratio.is_finite() {
                format!("{ratio:.2}x")
            } else {
                "-".into()
            }
        );
        let _ = writeln!(
            csv,
            "\"{}\",{},{:.4},{:.4},\"{}\",{:.4},{:.4},{}",
            f.name, f.unit, f.p50, f.p95, f.reference, f.ref_p50, ratio, f.higher_is_better
        );
        json.push(serde_json::json!({
            "figure": f.name, "unit": f.unit, "p50": f.p50, "p95": f.p95,
            "reference": f.reference, "reference_p50": f.ref_p50,
            "ratio": if ratio.is_finite() { Some(ratio) } else { None },
            "higher_is_better": f.higher_is_better,
        }));
    }
    println!("{table}");
    let doc = serde_json::json!({ "machine": machine(), "unix_time": stamp, "figures": json });
    std::fs::write(out_dir.join(format!("bench-{stamp}.json")), doc.to_string()).unwrap();
    std::fs::write(out_dir.join(format!("bench-{stamp}.csv")), csv).unwrap();
    // No plot points when the throughput section did not run: the last
    // plot stays as it was.
    let plotted = if plot.is_empty() {
        ""
    } else {
        std::fs::write(out_dir.join("lifecycle-latency.svg"), svg(plot)).unwrap();
        ", results/lifecycle-latency.svg"
    };
    println!("wrote results/bench-{stamp}.json, results/bench-{stamp}.csv{plotted}");
}

/// Sessions, and median ms per connection, per lifecycle without and with
/// a database.
pub type PlotPoint = (usize, f64, f64, f64);

/// A plotted series: its label, its colour, and how to read it off a point.
type Series = (&'static str, &'static str, fn(&PlotPoint) -> f64);

/// Median latency per operation against concurrency: connections, and
/// worker lifecycles without and with a database.
fn svg(points: &[PlotPoint]) -> String {
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let max_y = points
        .iter()
        .flat_map(|p| [p.1, p.2, p.3])
        .fold(1.0f64, f64::max)
        * 1.1;
    let x_of = |i: usize| pad + i as f64 * (w - 2.0 * pad) / (points.len().max(2) - 1) as f64;
    let y_of = |v: f64| h - pad - v / max_y * (h - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"20\">median latency per operation (ms) against client sessions</text>\n\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - pad,
        w - pad,
        h - pad,
        h - pad
    );
    for (i, p) in points.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{} session(s)</text>",
            x_of(i),
            h - pad + 18.0,
            p.0
        );
    }
    for k in 0..=4 {
        let v = max_y * k as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.1}</text>",
            pad - 5.0,
            y_of(v) + 4.0
        );
    }
    let series: [Series; 3] = [
        ("connect + SELECT 1", "#888888", |p| p.1),
        ("worker lifecycle, no database", "#1f77b4", |p| p.2),
        ("worker lifecycle, with database", "#d62728", |p| p.3),
    ];
    for (n, (label, color, get)) in series.iter().enumerate() {
        let pts: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x_of(i), y_of(get(p))))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{label}</text>",
            pad + 10.0,
            pad + 15.0 * n as f64
        );
    }
    s.push_str("</svg>\n");
    s
}
