//! The report as one self-contained HTML file: inline CSS and SVG, no script to run and
//! nothing fetched when it opens (no CDN, no fonts, no images), so it opens from disk in any
//! browser. The data the charts are drawn from is embedded as JSON
//! (`<script type="application/json" id="report-data">`), for tools and tests.

use std::fmt::Write as _;

use super::chart::{self, Chart, ChartError};
use super::data::{AlertSpan, ReportData};
use crate::ui;

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn minutes_between(a: i64, b: i64) -> i64 {
    (b - a).max(0) / 60_000
}

/// `threshold checkout/error_rate: critical, fired 14:35, resolved 14:47 (12 min), peak 0.34`.
fn alert_line(a: &AlertSpan, to_ms: i64) -> String {
    let fired = ui::time(a.fired_ms);
    let until = match a.resolved_ms {
        Some(r) => format!(
            "resolved {} ({} min)",
            ui::time(r),
            minutes_between(a.fired_ms, r)
        ),
        None => format!(
            "still firing at the end ({} min so far)",
            minutes_between(a.fired_ms, to_ms)
        ),
    };
    format!(
        "<b>{}</b> {} &mdash; {}: {}, fired {fired}, {until}, peak value {:.4}, {} notification(s)",
        esc(&a.rule),
        esc(&a.key),
        esc(&a.severity),
        esc(&a.title),
        a.peak_value,
        a.notifications
    )
}

/// Renders the whole page.
pub fn render(data: &ReportData) -> Result<String, ChartError> {
    let mut html = String::with_capacity(256 * 1024);
    let title = format!("sluice report: {}", data.tenant);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(
        html,
        "<h1>{}</h1><p class=\"meta\">{} to {} &middot; {} service(s) &middot; from {}</p>",
        esc(&title),
        ui::time(data.from_ms),
        ui::time(data.to_ms),
        data.services.len(),
        esc(&data.source)
    );

    html.push_str("<section id=\"summary\"><h2>What fired</h2>");
    if data.alerts.is_empty() {
        html.push_str("<p>No alert fired in this range.</p>");
    } else {
        html.push_str("<ul>");
        for a in &data.alerts {
            let _ = write!(html, "<li>{}</li>", alert_line(a, data.to_ms));
        }
        html.push_str("</ul>");
    }
    let _ = writeln!(
        html,
        "<p>{} notification(s), each signed (HMAC-SHA256) with the tenant's webhook secret; {} \
         kept undelivered for <code>sluice alerts redrive</code>.</p></section>",
        data.notifications, data.undelivered
    );

    for (service, points) in &data.services {
        let alerts: Vec<&AlertSpan> = data.alerts_on(service).collect();
        let Chart {
            svg,
            x0_px,
            x1_px,
            t0_ms,
            t1_ms,
        } = chart::draw(service, points, &alerts, data.from_ms, data.to_ms)?;
        let _ = writeln!(
            html,
            "<figure class=\"chart\" data-service=\"{}\" data-windows=\"{}\" data-x0-px=\"{x0_px}\" \
             data-x1-px=\"{x1_px}\" data-t0-ms=\"{t0_ms}\" data-t1-ms=\"{t1_ms}\">\
             <figcaption>{}</figcaption>{svg}</figure>",
            esc(service),
            points.len(),
            esc(service)
        );
    }

    patterns_section(&mut html, data);
    let json = serde_json::to_string(data).unwrap_or_default();
    // With every `<` escaped (JSON's `\u003c`), no text in the data can end the element or
    // open another.
    let _ = write!(
        html,
        "<script type=\"application/json\" id=\"report-data\">{}</script>\n</body></html>\n",
        json.replace('<', "\\u003c")
    );
    Ok(html)
}

fn patterns_section(html: &mut String, data: &ReportData) {
    let row = |html: &mut String, p: &super::data::PatternTotal| {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td><code>{}</code></td>\
             <td><code>{}</code></td></tr>",
            esc(&p.service),
            esc(&p.level),
            p.count,
            p.new_at_ms.map_or_else(String::new, ui::time),
            esc(&p.template),
            esc(&p.sample)
        );
    };
    const HEAD: &str = "<table><tr><th>service</th><th>level</th><th>count</th>\
                        <th>first seen</th><th>pattern</th><th>sample</th></tr>";
    html.push_str("<section id=\"patterns\"><h2>New log patterns</h2>");
    let new: Vec<_> = data
        .patterns
        .iter()
        .filter(|p| p.new_at_ms.is_some_and(|at| at != data.from_ms))
        .collect();
    if new.is_empty() {
        html.push_str("<p>None after the first window.</p>");
    } else {
        html.push_str(HEAD);
        for p in new.iter().take(20) {
            row(html, p);
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Most frequent log patterns</h2>");
    if data.patterns.is_empty() {
        html.push_str("<p>No log patterns in this report's data.</p>");
    } else {
        html.push_str(HEAD);
        for p in data.patterns.iter().take(15) {
            row(html, p);
        }
        html.push_str("</table>");
    }
    html.push_str("</section>\n");
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;\
max-width:1000px;color:#222;background:#fafafa}h1{font-size:22px;margin-bottom:4px}\
h2{font-size:17px;margin-top:28px}.meta{color:#666;margin-top:0}\
figure.chart{background:#fff;border:1px solid #ddd;border-radius:6px;margin:18px 0;padding:8px}\
figcaption{font-weight:600;font-size:15px;margin:2px 6px 6px}svg{max-width:100%;height:auto}\
table{border-collapse:collapse;width:100%;font-size:13px;background:#fff}\
td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}\
td.n{text-align:right}code{font-size:12px;word-break:break-all}li{margin:4px 0}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd_report::data::Point;
    use std::collections::BTreeMap;

    #[test]
    fn the_page_has_a_chart_per_service_and_fetches_nothing() -> Result<(), ChartError> {
        let point = |m: i64| Point {
            start_ms: m * 60_000,
            end_ms: (m + 1) * 60_000,
            events: 10,
            errors: 0,
            http_5xx: 0,
            error_rate: 0.0,
            latency_p50: 1.0,
            latency_p99: 2.0,
        };
        let mut services = BTreeMap::new();
        for s in ["api", "db</script><script>alert(1)</script>"] {
            services.insert(s.to_owned(), (0..5).map(point).collect());
        }
        let data = ReportData {
            tenant: "acme".into(),
            source: "test".into(),
            from_ms: 0,
            to_ms: 5 * 60_000,
            services,
            alerts: Vec::new(),
            patterns: Vec::new(),
            notifications: 0,
            undelivered: 0,
        };
        let html = render(&data)?;
        assert_eq!(html.matches("<figure class=\"chart\"").count(), 2);
        assert!(!html.contains("<script>alert"), "names are escaped");
        for fetch in ["http://", "https://", "src=", "@import", "url("] {
            let outside_svg_ns = html.replace("http://www.w3.org/2000/svg", "");
            assert!(!outside_svg_ns.contains(fetch), "{fetch} in the page");
        }
        Ok(())
    }
}
