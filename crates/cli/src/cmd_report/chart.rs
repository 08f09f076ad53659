//! One service's chart, drawn with plotters into SVG: three panels over the same time axis
//! (events and HTTP 5xx per window, the error rate, p50 and p99 latency), each window a point,
//! and the alerts that concern the service as shaded bands from firing to resolved.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::data::{AlertSpan, Point};

/// The chart's size in pixels.
pub const WIDTH: u32 = 960;
const HEIGHT: u32 = 540;

/// The colour of alert bands (drawn translucent): the test finds the bands by it.
pub const BAND: RGBColor = RGBColor(0xE4, 0x57, 0x2E);
const EVENTS: RGBColor = RGBColor(0x1F, 0x77, 0xB4);
const ERRORS: RGBColor = RGBColor(0xD6, 0x27, 0x28);
const P50: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
const P99: RGBColor = RGBColor(0x94, 0x67, 0xBD);

/// A drawn chart, with where its time axis lies in pixels (so a reader of the SVG can turn
/// the x of anything drawn back into a time).
#[derive(Debug)]
pub struct Chart {
    pub svg: String,
    /// Pixel x of `t0_ms` and of `t1_ms` (the range's start and end).
    pub x0_px: i32,
    pub x1_px: i32,
    pub t0_ms: i64,
    pub t1_ms: i64,
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the chart of {service}: {message}")]
pub struct ChartError {
    service: String,
    message: String,
}

/// Minutes since `t0`, the x of every panel.
fn minutes(ms: i64, t0: i64) -> f64 {
    (ms - t0) as f64 / 60_000.0
}

/// Draws `service`'s chart over `[t0_ms, t1_ms]`.
pub fn draw(
    service: &str,
    points: &[Point],
    alerts: &[&AlertSpan],
    t0_ms: i64,
    t1_ms: i64,
) -> Result<Chart, ChartError> {
    let failed = |e: &dyn std::fmt::Display| ChartError {
        service: service.to_owned(),
        message: e.to_string(),
    };
    let mut svg = String::new();
    let mapping = {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        let panels = root.split_evenly((3, 1));
        let x_end = minutes(t1_ms, t0_ms).max(1.0);
        let mut mapping = (0, 0);
        let label = move |x: &f64| {
            sluice_core::normalize::timestamp::format_rfc3339_ms(t0_ms + (*x * 60_000.0) as i64)
                [11..16]
                .to_owned()
        };
        for (i, panel) in panels.iter().enumerate() {
            let drawn = draw_panel(i, panel, points, alerts, t0_ms, x_end, &label)
                .map_err(|e| failed(&e))?;
            if i == 0 {
                mapping = drawn;
            }
        }
        root.present().map_err(|e| failed(&e))?;
        mapping
    };
    Ok(Chart {
        svg,
        x0_px: mapping.0,
        x1_px: mapping.1,
        t0_ms,
        t1_ms,
    })
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A panel's series: name, colour, points.
type Series = Vec<(&'static str, RGBColor, Vec<(f64, f64)>)>;

/// One panel: 0 events and 5xx, 1 error rate, 2 latency. Returns the pixel x of the axis's
/// start and end.
fn draw_panel(
    which: usize,
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    points: &[Point],
    alerts: &[&AlertSpan],
    t0: i64,
    x_end: f64,
    label: &dyn Fn(&f64) -> String,
) -> DrawResult<(i32, i32)> {
    let (title, y_desc, series): (&str, &str, Series) = match which {
        0 => (
            "events and HTTP 5xx per window",
            "events",
            vec![
                ("events", EVENTS, xy(points, t0, |p| p.events as f64)),
                ("HTTP 5xx", ERRORS, xy(points, t0, |p| p.http_5xx as f64)),
            ],
        ),
        1 => (
            "error rate",
            "%",
            vec![(
                "error rate %",
                ERRORS,
                xy(points, t0, |p| p.error_rate * 100.0),
            )],
        ),
        _ => (
            "latency",
            "ms",
            vec![
                ("p50 ms", P50, xy(points, t0, |p| p.latency_p50)),
                ("p99 ms", P99, xy(points, t0, |p| p.latency_p99)),
            ],
        ),
    };
    let y_max = series
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|(_, y)| *y))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 14))
        .margin(6)
        .x_label_area_size(22)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..x_end, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_labels(12)
        .y_labels(5)
        .x_label_formatter(label)
        .y_desc(y_desc)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for a in alerts {
        let start = minutes(a.fired_ms, t0).clamp(0.0, x_end);
        let end = a
            .resolved_ms
            .map_or(x_end, |r| minutes(r, t0))
            .clamp(start, x_end);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(start, 0.0), (end, y_max)],
            BAND.mix(0.18).filled(),
        )))?;
    }
    for (name, color, data) in series {
        chart
            .draw_series(LineSeries::new(data, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    let (x0, _) = chart.backend_coord(&(0.0, 0.0));
    let (x1, _) = chart.backend_coord(&(x_end, 0.0));
    Ok((x0, x1))
}

fn xy(points: &[Point], t0: i64, value: impl Fn(&Point) -> f64) -> Vec<(f64, f64)> {
    points
        .iter()
        .map(|p| (minutes(p.start_ms, t0), value(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(minute: i64, events: u64) -> Point {
        Point {
            start_ms: minute * 60_000,
            end_ms: (minute + 1) * 60_000,
            events,
            errors: 1,
            http_5xx: 2,
            error_rate: 0.1,
            latency_p50: 40.0,
            latency_p99: 300.0,
        }
    }

    #[test]
    fn draws_a_line_per_series_and_a_band_per_alert_on_the_time_axis() -> Result<(), ChartError> {
        let points: Vec<Point> = (0..30).map(|m| point(m, 100 + m as u64)).collect();
        let alert = AlertSpan {
            rule: "threshold".into(),
            key: "k".into(),
            title: "t".into(),
            severity: "critical".into(),
            service: None,
            fired_ms: 10 * 60_000,
            resolved_ms: Some(20 * 60_000),
            peak_value: 1.0,
            notifications: 2,
        };
        let chart = draw("api", &points, &[&alert], 0, 30 * 60_000)?;
        // Five series (events, 5xx, error rate, p50, p99), each a polyline of 30 points (the
        // axes and legend marks are polylines of a few).
        let lines = chart
            .svg
            .split("<polyline")
            .skip(1)
            .filter(|l| {
                l.split("points=\"")
                    .nth(1)
                    .and_then(|p| p.split('"').next())
                    .is_some_and(|p| p.split_whitespace().count() == 30)
            })
            .count();
        assert_eq!(lines, 5);
        // One band per panel, in the band colour.
        let bands = chart.svg.matches("fill=\"#E4572E\"").count();
        assert_eq!(bands, 3);
        assert!(chart.x1_px > chart.x0_px + 600, "{chart:?}");
        Ok(())
    }
}
