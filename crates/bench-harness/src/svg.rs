//! A plot of a [`Report`] as SVG, drawn by hand: one grouped bar chart of
//! throughput and one of latency, a bar per path in each workload group,
//! with the min–max spread of the repetitions as a whisker.
//!
//! Invariant: the output is a pure function of the report; every number
//! written is finite (charts with nothing to draw are left out).

use std::fmt::Write as _;

use crate::report::{Report, number};

/// Width of the whole picture in SVG user units.
const WIDTH: f64 = 960.0;
/// Height of one chart, axes and labels included.
const CHART_HEIGHT: f64 = 320.0;
/// Room left of the plot area for the axis labels.
const LEFT: f64 = 70.0;
/// Room right of the plot area for the legend.
const RIGHT: f64 = 190.0;
/// Room above the plot area for the title.
const TOP: f64 = 36.0;
/// Room below the plot area for the group labels.
const BOTTOM: f64 = 40.0;

/// Fill colours, one per path in order (cycled).
const COLOURS: [&str; 8] = [
    "#1f77b4", "#aec7e8", "#ff7f0e", "#2ca02c", "#98df8a", "#d62728", "#9467bd", "#8c564b",
];

/// One chart: which (workload, metric) groups it shows.
struct Chart<'a> {
    title: &'a str,
    unit: &'a str,
    groups: &'a [(&'a str, &'a str, &'a str)],
}

const THROUGHPUT: Chart<'static> = Chart {
    title: "TCP throughput (higher is better)",
    unit: "Gbit/s",
    groups: &[
        ("tcp_g2h", "gbit_s", "guest → host"),
        ("tcp_g2h6", "gbit_s", "guest → host IPv6"),
        ("tcp_h2g", "gbit_s", "host → guest"),
        ("tcp_h2g6", "gbit_s", "host → guest IPv6"),
    ],
};

const LATENCY: Chart<'static> = Chart {
    title: "Round-trip latency, median (lower is better)",
    unit: "µs",
    groups: &[
        ("tcp_rr", "p50_us", "TCP_RR"),
        ("tcp_rr6", "p50_us", "TCP_RR IPv6"),
        ("tcp_crr", "p50_us", "TCP_CRR"),
        ("tcp_crr6", "p50_us", "TCP_CRR IPv6"),
        ("udp_rr", "p50_us", "UDP_RR"),
        ("icmp", "p50_us", "ping"),
        ("fwd_connect", "p50_us", "fwd connect"),
    ],
};

/// The report's throughput and latency charts as an SVG document.
#[must_use]
pub fn render(report: &Report) -> String {
    let paths = report.paths();
    let mut body = String::new();
    let mut y = 0.0;
    for chart in [THROUGHPUT, LATENCY] {
        if draw_chart(&mut body, report, &paths, &chart, y) {
            y += CHART_HEIGHT;
        }
    }
    let height = y.max(40.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    if y == 0.0 {
        out.push_str("<text x=\"10\" y=\"24\">no throughput or latency results</text>\n");
    }
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

/// Where a chart's plot area stands and how values map onto it.
struct Plot {
    /// The top of the chart (its title's band).
    top: f64,
    /// The y of the value 0: the bottom of the plot area.
    base: f64,
    plot_w: f64,
    plot_h: f64,
    /// The value at the top of the axis.
    scale_top: f64,
}

impl Plot {
    fn y(&self, v: f64) -> f64 {
        self.base - (v / self.scale_top) * self.plot_h
    }
}

/// Draws `chart` with its top at `top`; false (and nothing drawn) when the
/// report has no value for it.
fn draw_chart(
    out: &mut String,
    report: &Report,
    paths: &[&str],
    chart: &Chart<'_>,
    top: f64,
) -> bool {
    let groups: Vec<_> = chart
        .groups
        .iter()
        .filter(|(w, m, _)| paths.iter().any(|p| report.row(p, w, m).is_some()))
        .collect();
    let peak = groups
        .iter()
        .flat_map(|(w, m, _)| paths.iter().filter_map(|p| report.row(p, w, m)?.summary()))
        .map(|s| s.max)
        .fold(0.0_f64, f64::max);
    if groups.is_empty() || !(peak > 0.0 && peak.is_finite()) {
        return false;
    }
    let (scale_top, step) = axis(peak);
    let plot_h = CHART_HEIGHT - TOP - BOTTOM;
    let plot = Plot {
        top,
        base: top + TOP + plot_h,
        plot_w: WIDTH - LEFT - RIGHT,
        plot_h,
        scale_top,
    };
    draw_axis(out, chart, &plot, step);
    #[allow(clippy::cast_precision_loss, reason = "a handful of groups and paths")]
    let (group_w, bar_w) = {
        let group_w = plot.plot_w / groups.len() as f64;
        (group_w, group_w * 0.8 / paths.len().max(1) as f64)
    };
    for (g, (workload, metric, label)) in groups.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "a handful of groups")]
        let gx = LEFT + group_w * g as f64 + group_w * 0.1;
        for (i, path) in paths.iter().enumerate() {
            let Some(s) = report.row(path, workload, metric).and_then(|r| r.summary()) else {
                continue;
            };
            #[allow(clippy::cast_precision_loss, reason = "a handful of paths")]
            let x = gx + bar_w * i as f64;
            let colour = COLOURS[i % COLOURS.len()];
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\">\
                 <title>{path} {label}: {} {} ({}–{})</title></rect>",
                plot.y(s.median),
                bar_w * 0.9,
                plot.base - plot.y(s.median),
                number(s.median),
                chart.unit,
                number(s.min),
                number(s.max),
            );
            let cx = x + bar_w * 0.45;
            let _ = writeln!(
                out,
                "<line x1=\"{cx:.1}\" y1=\"{:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
                plot.y(s.min),
                plot.y(s.max)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            gx + group_w * 0.4,
            plot.base + 18.0
        );
    }
    draw_base_and_legend(out, paths, &plot);
    true
}

/// The chart's title, the horizontal grid with its tick labels every
/// `step`, and the unit along the axis.
fn draw_axis(out: &mut String, chart: &Chart<'_>, plot: &Plot, step: f64) {
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        plot.top + 22.0,
        chart.title
    );
    let mut tick = 0.0;
    while tick <= plot.scale_top + step / 2.0 {
        let ty = plot.y(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot.plot_w,
            LEFT - 6.0,
            ty + 4.0,
            number(tick)
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        "<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>",
        plot.top + TOP + plot.plot_h / 2.0,
        plot.top + TOP + plot.plot_h / 2.0,
        chart.unit
    );
}

/// The axis line at 0 and a colour key per path right of the plot.
fn draw_base_and_legend(out: &mut String, paths: &[&str], plot: &Plot) {
    let base = plot.base;
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"black\"/>",
        LEFT + plot.plot_w
    );
    for (i, path) in paths.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "a handful of paths")]
        let ly = plot.top + TOP + 18.0 * i as f64;
        let lx = WIDTH - RIGHT + 16.0;
        let _ = writeln!(
            out,
            "<rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{path}</text>",
            COLOURS[i % COLOURS.len()],
            lx + 18.0,
            ly + 10.0
        );
    }
}

/// The top of the axis and the tick step for data peaking at `peak`: a
/// step of 1, 2 or 5 times a power of ten, about five ticks.
fn axis(peak: f64) -> (f64, f64) {
    let raw = peak / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    ((peak / step).ceil() * step, step)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::report::metric;

    #[test]
    fn axis_steps_are_round_and_cover_the_peak() {
        let close =
            |(a, b): (f64, f64), (c, d): (f64, f64)| (a - c).abs() < 1e-9 && (b - d).abs() < 1e-9;
        assert!(close(axis(32.0), (40.0, 10.0)), "{:?}", axis(32.0));
        assert!(close(axis(107.0), (150.0, 50.0)), "{:?}", axis(107.0));
        assert!(close(axis(0.9), (1.0, 0.2)), "{:?}", axis(0.9));
        assert!(close(axis(5.0), (5.0, 1.0)), "{:?}", axis(5.0));
    }

    #[test]
    fn svg_has_a_bar_per_path_and_workload_with_finite_coordinates() {
        let mut report = Report::default();
        for (path, gbit, us) in [("slipway-65520", 15.0, 30.0), ("pasta", 11.0, 47.0)] {
            report.record(path, "tcp_g2h", metric::GBIT_S, gbit);
            report.record(path, "tcp_rr", metric::P50_US, us);
        }
        let svg = render(&report);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 4, "{svg}");
        assert!(svg.contains("<title>pasta TCP_RR: 47.0 µs (47.0–47.0)</title>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(!svg.contains("IPv6"), "no IPv6 group without IPv6 rows");
        // An IPv6 row gets its group beside the IPv4 one.
        report.record("pasta", "tcp_g2h6", metric::GBIT_S, 9.0);
        let svg = render(&report);
        assert!(
            svg.contains("<title>pasta guest → host IPv6: 9.00 Gbit/s (9.00–9.00)</title>"),
            "{svg}"
        );
    }

    #[test]
    fn empty_report_draws_a_note_not_a_chart() {
        let svg = render(&Report::default());
        assert!(svg.contains("no throughput or latency results"));
        assert!(!svg.contains("<rect x="));
    }
}
