//! The latency chart (`--plot`): each operation's cumulative distribution as a line, latency
//! on a logarithmic x axis, the share of requests at most that slow on the y axis; plain SVG
//! written by hand.

use std::fmt::Write as _;

use crate::stats::Summary;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
/// Line colours, one per operation in turn.
const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// The chart of `summaries`' distributions, titled `title`.
pub fn latency_cdf(title: &str, summaries: &[Summary]) -> String {
    let points = summaries.iter().flat_map(|s| s.cdf.iter().map(|(ms, _)| *ms));
    let (low, high) = points.fold((f64::MAX, f64::MIN), |(low, high), ms| (low.min(ms), high.max(ms)));
    // Whole decades around the data, at least one.
    let (low, high) = if low > high {
        (0.1, 10.0)
    } else {
        (low.max(0.001), high.max(low * 10.0))
    };
    let first = low.log10().floor() as i32;
    let last = (high.log10().ceil() as i32).max(first + 1);
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x =
        |ms: f64| LEFT + (ms.max(10f64.powi(first)).log10() - f64::from(first)) / f64::from(last - first) * plot_width;
    let y = |share: f64| TOP + (1.0 - share) * plot_height;

    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"14\">{}</text>\n",
        escape(title)
    );
    for decade in first..=last {
        let at = x(10f64.powi(decade));
        let label = format_ms(10f64.powi(decade));
        let _ = writeln!(
            svg,
            "<line x1=\"{at:.1}\" y1=\"{TOP}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            TOP + plot_height,
            TOP + plot_height + 16.0
        );
    }
    for share in [0.0, 0.25, 0.5, 0.75, 0.9, 1.0] {
        let at = y(share);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_width,
            LEFT - 6.0,
            at + 4.0,
            share
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">latency (ms, log scale)</text>\n\
         <text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">share of requests at most that slow</text>",
        LEFT + plot_width / 2.0,
        HEIGHT - 10.0,
        TOP + plot_height / 2.0,
        TOP + plot_height / 2.0
    );
    for (n, summary) in summaries.iter().filter(|s| !s.cdf.is_empty()).enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let points: Vec<String> = summary
            .cdf
            .iter()
            .map(|(ms, share)| format!("{:.1},{:.1}", x(*ms), y(*share)))
            .collect();
        let legend_y = TOP + 16.0 * n as f64 + 8.0;
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\n\
             <line x1=\"{:.1}\" y1=\"{legend_y:.1}\" x2=\"{:.1}\" y2=\"{legend_y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            points.join(" "),
            LEFT + plot_width + 10.0,
            LEFT + plot_width + 30.0,
            LEFT + plot_width + 36.0,
            legend_y + 4.0,
            escape(&summary.operation)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `0.1`, `1`, `10`, `1000` (milliseconds, no trailing zeros).
fn format_ms(ms: f64) -> String {
    if ms >= 1.0 { format!("{ms:.0}") } else { format!("{ms}") }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{Outcome, Recorder};

    #[test]
    fn each_operation_is_a_line_over_log_decades_with_its_name_escaped() {
        let recorder = Recorder::default();
        for ms in [1, 2, 5, 20, 300] {
            recorder.record("GET /a?x=<1>&y", Duration::from_millis(ms), Outcome::Status(200));
            recorder.record("POST /b", Duration::from_millis(ms * 2), Outcome::Status(202));
        }
        let svg = latency_cdf("read & write", &recorder.summarize(Duration::from_secs(1)));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        // `all`, and the two operations.
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("GET /a?x=&lt;1&gt;&amp;y"));
        assert!(svg.contains("read &amp; write"));
        assert!(!svg.contains("<1>"));
        // Decades from 1 ms to 1000 ms.
        for label in [">1<", ">10<", ">100<", ">1000<"] {
            assert!(svg.contains(label), "{label}");
        }
        // Every point lies inside the chart.
        for polyline in svg.split("points=\"").skip(1) {
            for point in polyline.split('"').next().unwrap().split(' ') {
                let (px, py) = point.split_once(',').unwrap();
                let (px, py): (f64, f64) = (px.parse().unwrap(), py.parse().unwrap());
                assert!((LEFT..=WIDTH - RIGHT).contains(&px), "{point}");
                assert!((TOP..=HEIGHT - BOTTOM).contains(&py), "{point}");
            }
        }
    }
}
