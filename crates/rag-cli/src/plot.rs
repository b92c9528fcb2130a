//! `rag tune --plot DIR`: the quality-vs-latency picture of the searched settings, as SVG and
//! PNG (plotters): every setting a point (p50 latency, half-A nDCG@10), the Pareto front as a
//! line, the current setting and the chosen one marked.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use rag::tune::TuneReport;
use rag::{RagError, Result};

/// Where a TrueType font for the plots' text is looked for (`RAG_PLOT_FONT` first); `make
/// setup` installs fonts-dejavu-core.
const FONTS: &[&str] =
    &["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"];

const SIZE: (u32, u32) = (960, 600);

/// Writes `tune-pareto.svg` and `tune-pareto.png` into `dir` (created if missing); their paths.
pub fn pareto(report: &TuneReport, dir: &Path) -> Result<Vec<PathBuf>> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|e| RagError::io(dir, e))?;
    let svg = dir.join("tune-pareto.svg");
    let png = dir.join("tune-pareto.png");
    draw(SVGBackend::new(&svg, SIZE).into_drawing_area(), report).map_err(|e| plot_error(&svg, e))?;
    draw(BitMapBackend::new(&png, SIZE).into_drawing_area(), report).map_err(|e| plot_error(&png, e))?;
    Ok(vec![svg, png])
}

/// The same picture as an SVG string, for the HTML report.
pub fn pareto_svg(report: &TuneReport) -> Result<String> {
    register_font()?;
    let mut svg = String::new();
    draw(SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(), report)
        .map_err(|e| RagError::Other(format!("could not draw the Pareto plot: {e}")))?;
    Ok(svg)
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> RagError {
    RagError::Other(format!("could not draw {}: {e}", path.display()))
}

/// Registers the font plotters draws text with (ab_glyph needs the bytes for the whole process).
fn register_font() -> Result<()> {
    static FONT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> =
            std::env::var_os("RAG_PLOT_FONT").map(PathBuf::from).into_iter().chain(FONTS.iter().map(PathBuf::from)).collect();
        let (path, bytes) = candidates.iter().find_map(|p| std::fs::read(p).ok().map(|b| (p.clone(), b))).ok_or_else(|| {
            format!(
                "no TrueType font to draw the plots' text (looked for {}): install fonts-dejavu-core (make setup does) \
                     or set RAG_PLOT_FONT to a .ttf file",
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a TrueType font plotters can read: set RAG_PLOT_FONT", path.display()))
    })
    .clone()
    .map_err(RagError::config)
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, report: &TuneReport) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let points: Vec<(f64, f64)> = report.settings.iter().map(|s| (s.p50_ms, s.tune.ndcg_at_10)).collect();
    let (x_max, y_min, y_max) =
        points.iter().fold((0.0_f64, f64::MAX, f64::MIN), |(x, lo, hi), &(px, py)| (x.max(px), lo.min(py), hi.max(py)));
    let y_pad = ((y_max - y_min) * 0.1).max(0.01);
    // Room below the lowest point for the legend, so it covers no point.
    let y_floor = y_min - y_pad - (y_max - y_min + 2.0 * y_pad) * 0.4;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("rag tune: quality vs latency ({} settings, {} tuning queries)", points.len(), report.tune_queries.len()),
            ("sans-serif", 22),
        )
        .margin(18)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max * 1.1 + 0.1, y_floor..(y_max + y_pad))?;
    chart
        .configure_mesh()
        .x_desc("retrieval latency p50 (ms, one query at a time)")
        .y_desc("nDCG@10 on the tuning half")
        .label_style(("sans-serif", 14))
        .draw()?;
    let mut front: Vec<(f64, f64)> = report.settings.iter().filter(|s| s.pareto).map(|s| (s.p50_ms, s.tune.ndcg_at_10)).collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(front, BLACK.stroke_width(2)))?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.mix(0.45).filled())))?
        .label("a searched setting")
        .legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.mix(0.45).filled()));
    let current = (report.current.p50_ms, report.current.tune.ndcg_at_10);
    chart
        .draw_series(std::iter::once(Cross::new(current, 9, RED.stroke_width(3))))?
        .label(format!("current: {}", report.current.label))
        .legend(|(x, y)| Cross::new((x + 10, y), 6, RED.stroke_width(3)));
    let chosen = (report.chosen.p50_ms, report.chosen.tune.ndcg_at_10);
    chart
        .draw_series(std::iter::once(TriangleMarker::new(chosen, 10, GREEN.filled())))?
        .label(format!("chosen: {}", report.chosen.label))
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, GREEN.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The per-query nDCG@10 of an evaluation as an SVG histogram (ten bins of 0.1), for the
/// HTML report.
pub fn ndcg_histogram_svg(scores: &[f64], title: &str) -> Result<String> {
    register_font()?;
    let mut bins = [0u32; 10];
    for s in scores {
        bins[((s * 10.0) as usize).min(9)] += 1;
    }
    let mut svg = String::new();
    histogram(SVGBackend::with_string(&mut svg, (720, 360)).into_drawing_area(), &bins, title)
        .map_err(|e| RagError::Other(format!("could not draw the histogram: {e}")))?;
    Ok(svg)
}

fn histogram<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, bins: &[u32; 10], title: &str) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let top = bins.iter().copied().max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..1.0, 0u32..top + top / 10 + 1)?;
    chart.configure_mesh().x_desc("nDCG@10").y_desc("queries").label_style(("sans-serif", 13)).draw()?;
    chart.draw_series(bins.iter().enumerate().map(|(i, &n)| {
        let x = i as f64 / 10.0;
        Rectangle::new([(x + 0.005, 0), (x + 0.095, n)], BLUE.mix(0.6).filled())
    }))?;
    root.present()?;
    Ok(())
}
