//! The latency plot: latency by percentile for publish and end-to-end, as a standalone SVG.
//!
//! The x axis is the percentile on a log scale of `1 / (1 - percentile)`, so 90, 99, 99.9, 99.99
//! and 99.999 are evenly spaced, as HdrHistogram's plotter draws it; the y axis is latency in ms on
//! a log scale, so a tail hundreds of times the median stays readable.

use std::fmt::Write as _;

use crate::histogram::PercentilePoint;

/// Width of the picture in pixels.
const WIDTH_PX: f64 = 960.0;
/// Height of the picture in pixels.
const HEIGHT_PX: f64 = 540.0;
/// Space left of the plot area (y labels).
const MARGIN_LEFT_PX: f64 = 90.0;
/// Space right of the plot area.
const MARGIN_RIGHT_PX: f64 = 30.0;
/// Space above the plot area (title, legend).
const MARGIN_TOP_PX: f64 = 70.0;
/// Space below the plot area (x labels).
const MARGIN_BOTTOM_PX: f64 = 70.0;
/// Decades of the percentile axis: 0 .. 99.999.
const PERCENTILE_DECADES: f64 = 5.0;
/// Smallest latency drawn, in ms (the histograms' 1 µs floor).
const LATENCY_MS_FLOOR: f64 = 0.001;

/// The plot of a run's aggregate publish and end-to-end latency.
pub fn report_svg(report: &crate::report::Report) -> String {
    let aggregate = &report.aggregate;
    let title = format!(
        "{}: latency by percentile ({:.0} s measured, {:.0} msg/s published)",
        report.workload.name, aggregate.measured_s, aggregate.publish_rate_msg_s
    );
    latency_svg(
        &title,
        &[
            Series {
                label: "publish",
                colour: PUBLISH_COLOUR,
                points: &aggregate.publish_latency_curve,
            },
            Series {
                label: "end-to-end",
                colour: END_TO_END_COLOUR,
                points: &aggregate.end_to_end_latency_curve,
            },
        ],
    )
}

/// Colour of the publish latency curve.
const PUBLISH_COLOUR: &str = "#1f77b4";
/// Colour of the end-to-end latency curve.
const END_TO_END_COLOUR: &str = "#d62728";

/// One curve to draw.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Stroke colour (an SVG colour such as `#1f77b4`).
    pub colour: &'a str,
    /// The points, by increasing percentile.
    pub points: &'a [PercentilePoint],
}

/// Renders the curves as an SVG document titled `title`.
pub fn latency_svg(title: &str, series: &[Series<'_>]) -> String {
    let (low_decade, high_decade) = latency_decades(series);
    let axes = Axes {
        low_decade,
        high_decade,
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{HEIGHT_PX}" viewBox="0 0 {WIDTH_PX} {HEIGHT_PX}" font-family="sans-serif" font-size="13">
<rect x="0" y="0" width="{WIDTH_PX}" height="{HEIGHT_PX}" fill="white"/>
<text x="{}" y="28" text-anchor="middle" font-size="17">{}</text>"#,
        WIDTH_PX / 2.0,
        escape(title)
    );
    axes.draw_grid(&mut svg);
    for (index, one) in series.iter().enumerate() {
        axes.draw_series(&mut svg, one, index);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Lowest and highest power of ten bounding every latency drawn.
fn latency_decades(series: &[Series<'_>]) -> (i32, i32) {
    let values = series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|p| p.latency_ms.max(LATENCY_MS_FLOOR));
    let (low, high) = values.fold((f64::INFINITY, 0.0f64), |(low, high), v| {
        (low.min(v), high.max(v))
    });
    if !low.is_finite() {
        return (-1, 1);
    }
    let low_decade = low.log10().floor() as i32;
    let high_decade = (high.log10().ceil() as i32).max(low_decade + 1);
    (low_decade, high_decade)
}

struct Axes {
    low_decade: i32,
    high_decade: i32,
}

impl Axes {
    fn plot_width(&self) -> f64 {
        WIDTH_PX - MARGIN_LEFT_PX - MARGIN_RIGHT_PX
    }

    fn plot_height(&self) -> f64 {
        HEIGHT_PX - MARGIN_TOP_PX - MARGIN_BOTTOM_PX
    }

    fn x(&self, percentile: f64) -> f64 {
        let fraction_left = (1.0 - percentile / 100.0).max(10f64.powf(-PERCENTILE_DECADES));
        let decades = -fraction_left.log10();
        MARGIN_LEFT_PX + self.plot_width() * decades / PERCENTILE_DECADES
    }

    fn y(&self, latency_ms: f64) -> f64 {
        let span = f64::from(self.high_decade - self.low_decade);
        let position =
            (latency_ms.max(LATENCY_MS_FLOOR).log10() - f64::from(self.low_decade)) / span;
        MARGIN_TOP_PX + self.plot_height() * (1.0 - position.clamp(0.0, 1.0))
    }

    fn draw_grid(&self, svg: &mut String) {
        let (left, right) = (MARGIN_LEFT_PX, WIDTH_PX - MARGIN_RIGHT_PX);
        let (top, bottom) = (MARGIN_TOP_PX, HEIGHT_PX - MARGIN_BOTTOM_PX);
        for (decade, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
            .iter()
            .enumerate()
        {
            let x = left + self.plot_width() * decade as f64 / PERCENTILE_DECADES;
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#dddddd"/>
<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
                bottom + 20.0
            );
        }
        for decade in self.low_decade..=self.high_decade {
            let value = 10f64.powi(decade);
            let y = self.y(value);
            let _ = writeln!(
                svg,
                r##"<line x1="{left:.1}" y1="{y:.1}" x2="{right:.1}" y2="{y:.1}" stroke="#dddddd"/>
<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                left - 8.0,
                y + 4.0,
                format_ms(value)
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{left:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#333333"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>
<text x="22" y="{:.1}" text-anchor="middle" transform="rotate(-90 22 {:.1})">latency (ms)</text>"##,
            self.plot_width(),
            self.plot_height(),
            left + self.plot_width() / 2.0,
            HEIGHT_PX - 20.0,
            top + self.plot_height() / 2.0,
            top + self.plot_height() / 2.0
        );
    }

    fn draw_series(&self, svg: &mut String, series: &Series<'_>, index: usize) {
        let legend_x = MARGIN_LEFT_PX + 10.0 + 220.0 * index as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x:.1}" y1="50" x2="{:.1}" y2="50" stroke="{}" stroke-width="3"/>
<text x="{:.1}" y="54">{}</text>"#,
            legend_x + 30.0,
            escape(series.colour),
            legend_x + 38.0,
            escape(series.label)
        );
        if series.points.is_empty() {
            return;
        }
        let mut points = String::new();
        for point in series.points {
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                self.x(point.percentile),
                self.y(point.latency_ms)
            );
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            escape(series.colour),
            points.trim_end()
        );
    }
}

fn format_ms(value: f64) -> String {
    if value >= 1.0 {
        format!("{value:.0}")
    } else {
        let digits = (-value.log10()).round() as usize;
        format!("{value:.digits$}")
    }
}

/// Escapes text for XML character data and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::LatencyHistogram;

    /// A small XML well-formedness check: every tag closes in order, attributes are quoted,
    /// character data holds no raw `<` or stray `&`, and there is one root element.
    fn check_well_formed(xml: &str) -> Result<(), String> {
        let body = xml
            .strip_prefix("<?xml")
            .and_then(|rest| rest.split_once("?>"))
            .map(|(_, b)| b)
            .ok_or("no XML declaration")?;
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let mut rest = body;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or(format!("stray </{name}>"))?;
                if top != name.trim() {
                    return Err(format!("</{name}> closes <{top}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name = tag
                .split_whitespace()
                .next()
                .ok_or("empty tag")?
                .to_string();
            check_attributes(&tag[name.len()..])?;
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
        }
        check_text(rest)?;
        match (stack.is_empty(), roots) {
            (true, 1) => Ok(()),
            (false, _) => Err(format!("unclosed {stack:?}")),
            (_, roots) => Err(format!("{roots} root elements")),
        }
    }

    fn check_text(text: &str) -> Result<(), String> {
        for (index, _) in text.match_indices('&') {
            let entity = &text[index
                ..text[index..]
                    .find(';')
                    .map_or(text.len(), |end| index + end + 1)];
            if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity) {
                return Err(format!("bad entity {entity}"));
            }
        }
        Ok(())
    }

    fn check_attributes(mut attributes: &str) -> Result<(), String> {
        loop {
            attributes = attributes.trim_start();
            if attributes.is_empty() {
                return Ok(());
            }
            let (name, after) = attributes
                .split_once('=')
                .ok_or(format!("attribute without value: {attributes}"))?;
            if name.trim().is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("bad attribute name `{name}`"));
            }
            let after = after
                .strip_prefix('"')
                .ok_or(format!("unquoted attribute {name}"))?;
            let end = after
                .find('"')
                .ok_or(format!("unterminated attribute {name}"))?;
            check_text(&after[..end])?;
            attributes = &after[end + 1..];
        }
    }

    // Proves the plot is well-formed SVG with one curve per series, even when the title needs
    // escaping, by rendering two real histogram curves and checking the XML structure.
    #[test]
    fn svg_is_well_formed() {
        let mut publish = LatencyHistogram::new();
        let mut end_to_end = LatencyHistogram::new();
        for latency_us in (100..50_000).step_by(13) {
            publish.record_us(latency_us);
            end_to_end.record_us(latency_us * 3);
        }
        let (publish_curve, end_to_end_curve) =
            (publish.percentile_curve(), end_to_end.percentile_curve());
        let svg = latency_svg(
            "fast <&> \"quoted\" run",
            &[
                Series {
                    label: "publish",
                    colour: "#1f77b4",
                    points: &publish_curve,
                },
                Series {
                    label: "end-to-end",
                    colour: "#d62728",
                    points: &end_to_end_curve,
                },
            ],
        );
        check_well_formed(&svg).unwrap();
        assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("99.999%"));
        assert!(svg.contains("fast &lt;&amp;&gt; &quot;quoted&quot; run"));
        // Every polyline point lies inside the picture.
        for points in svg.split("points=\"").skip(1) {
            for pair in points.split('"').next().unwrap().split(' ') {
                let (x, y) = pair.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    (0.0..=WIDTH_PX).contains(&x) && (0.0..=HEIGHT_PX).contains(&y),
                    "{x},{y}"
                );
            }
        }
    }

    // Proves the checker itself rejects broken XML, so the test above can fail: mismatched tags,
    // raw ampersands and unquoted attributes are all refused.
    #[test]
    fn checker_rejects_broken_xml() {
        assert!(check_well_formed("<?xml version=\"1.0\"?><a><b></a></b>").is_err());
        assert!(check_well_formed("<?xml version=\"1.0\"?><a>x & y</a>").is_err());
        assert!(check_well_formed("<?xml version=\"1.0\"?><a w=3></a>").is_err());
        assert!(check_well_formed("<?xml version=\"1.0\"?><a></a><b/>").is_err());
        assert!(check_well_formed("<?xml version=\"1.0\"?><a v=\"1\"><b/></a>").is_ok());
    }

    // Proves an empty run (no samples) still gives a well-formed plot, by rendering empty series.
    #[test]
    fn empty_series_still_render() {
        let svg = latency_svg(
            "empty",
            &[Series {
                label: "publish",
                colour: "blue",
                points: &[],
            }],
        );
        check_well_formed(&svg).unwrap();
    }
}
