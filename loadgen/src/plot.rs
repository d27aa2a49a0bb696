//! The `--plot` SVG: latency percentiles (log scale) and answered QPS over the
//! run's seconds, one above the other, drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::stats::SecondStats;

/// Size of the SVG in pixels.
const SIZE_PX: (u32, u32) = (1000, 700);

/// Draws the plot of `series` into `path`; errors are returned as text
/// (plotters' error types are generic over the backend). With lookups (pod
/// model), the lookup latency's p50 and p99 are drawn too.
pub fn write_svg(series: &[SecondStats], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, SIZE_PX).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(SIZE_PX.1 * 3 / 5);
    draw_latency(series, &top).map_err(|e| e.to_string())?;
    draw_qps(series, &bottom).map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Chooses one percentile of a second's summary.
type PickPercentile = fn(&crate::stats::Percentiles) -> f64;

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn x_max(series: &[SecondStats]) -> f64 {
    series.last().map_or(1.0, |s| s.second as f64 + 1.0)
}

fn draw_latency(series: &[SecondStats], area: &Area) -> Result<(), Box<dyn std::error::Error>> {
    let ms = |us: f64| (us / 1000.0).max(0.001);
    let y_max = series
        .iter()
        .map(|s| ms(s.latency.max_us.max(s.lookup_latency.max_us)))
        .fold(1.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption("latency per second (ms, log scale)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max(series), (0.001f64..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("ms")
        .draw()?;
    let lines: [(&str, RGBColor, PickPercentile); 5] = [
        ("p50", BLUE, |p| p.p50_us),
        ("p90", GREEN, |p| p.p90_us),
        ("p99", MAGENTA, |p| p.p99_us),
        ("p99.9", RED, |p| p.p99_9_us),
        ("max", BLACK, |p| p.max_us),
    ];
    for (label, color, pick) in lines {
        let points = series
            .iter()
            .map(|s| (s.second as f64 + 0.5, ms(pick(&s.latency))));
        chart
            .draw_series(LineSeries::new(points, color))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    let lookups: [(&str, RGBColor, PickPercentile); 2] = [
        ("lookup p50", CYAN, |p| p.p50_us),
        ("lookup p99", RGBColor(255, 140, 0), |p| p.p99_us),
    ];
    let has_lookups = series.iter().any(|s| s.counters.lookups > 0);
    for (label, color, pick) in lookups.into_iter().filter(|_| has_lookups) {
        let points = series
            .iter()
            .map(|s| (s.second as f64 + 0.5, ms(pick(&s.lookup_latency))));
        chart
            .draw_series(LineSeries::new(points, color))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn draw_qps(series: &[SecondStats], area: &Area) -> Result<(), Box<dyn std::error::Error>> {
    let y_max = series
        .iter()
        .map(|s| s.qps.max(s.counters.sent as f64))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("queries per second", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max(series), 0f64..y_max)?;
    chart.configure_mesh().x_desc("second").draw()?;
    let sent = series
        .iter()
        .map(|s| (s.second as f64 + 0.5, s.counters.sent as f64));
    chart
        .draw_series(LineSeries::new(sent, CYAN))?
        .label("sent/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], CYAN));
    let answered = series.iter().map(|s| (s.second as f64 + 0.5, s.qps));
    chart
        .draw_series(LineSeries::new(answered, BLUE))?
        .label("answered/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
