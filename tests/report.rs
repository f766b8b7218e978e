//! The `report` node on a study of hand-made runs (command nodes that write
//! what a `train` node writes, so no training is needed): the answer on
//! top, the paper's figures and every extra panel, the tables, the paper's
//! Tables 1–3, and the HTML rendered by a real headless browser (Debian's
//! `chromium`, which `scripts/test.sh` installs as root).

mod common;
use common::{Project, EXTRA_FIGURES, PAPER_FIGURES};
use scalemake::train::job::{EvalRow, OptimSpec, Precision};
use scalemake::train::record::TrainRecord;
use scalemake::train::{Compute, ModelShape, ParamCounts, Variant};
use std::process::Command;

/// The figures of this study (baselines and doped models, a law fitted):
/// the paper's Figures 1–3, then every extra panel.
fn figures() -> Vec<&'static str> {
    PAPER_FIGURES[..3].iter().chain(&EXTRA_FIGURES).copied().collect()
}

/// A run as a `train` artifact: its record (`config.json`) and
/// `metrics/eval.jsonl` (loss on L = (1e13 / C)^0.05, C = 6·N·D).
fn write_run(
    p: &Project,
    name: &str,
    variant: Variant,
    (n_layer, d_model, n_head): (i64, i64, i64),
    trainable: i64,
    frozen: i64,
) {
    let model = ModelShape { n_layer, d_model, n_head, variant, ..ModelShape::preset("nano", 50_262).unwrap() };
    let params = ParamCounts { trainable, frozen, ..ParamCounts::default() };
    let penalty = if variant == Variant::Doped { 1.01 } else { 1.0 };
    let evals: Vec<EvalRow> = (1..=30)
        .map(|i| {
            let tokens = (1e7 * 1.25f64.powi(i) * (trainable as f64 / 1e6)).round();
            let val_loss =
                penalty * (1e13 / (6.0 * trainable as f64 * tokens)).powf(0.05) * (1.0 + 3.0 / tokens.powf(0.2));
            EvalRow { step: i as u64, tokens: tokens as u64, val_loss, compute: Compute::at(&params, tokens) }
        })
        .collect();
    let last = evals.last().unwrap();
    let optim = OptimSpec { decay_tokens: last.tokens as f64, final_lr_fraction: 0.1, ..OptimSpec::constant(1e-3) };
    let record = TrainRecord {
        model,
        precision: Precision::Fp32,
        params,
        steps: 30,
        tokens: last.tokens,
        batch_size: 8,
        optim,
        eval_tokens: 4096,
        val_loss: last.val_loss,
        test_loss: Some(last.val_loss * 1.01),
        branched_at: None,
        step: None,
    };
    p.write(&format!("runs/{name}/config.json"), &serde_json::to_string(&record).unwrap());
    let lines: Vec<String> = evals.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    p.write(&format!("runs/{name}/metrics/eval.jsonl"), &(lines.join("\n") + "\n"));
}

const STUDY: &str = "
nodes:
  train:
    kind: command
    matrix: {run: [b1, b2, b3, xsmall, d1, d2, d3]}
    deps: ['runs/${run}/**']
    cmd: cp -r runs/${run}/. $OUT/
    outputs: [config.json, metrics/eval.jsonl]
  laws: {kind: fit, input: train, bootstrap: 20}
  report: {kind: report, input: [train, laws], title: Hand-made study}
";

fn study() -> Project {
    let p = Project::new(STUDY);
    for (i, n) in [1_000_000, 4_000_000, 16_000_000].into_iter().enumerate() {
        write_run(&p, &format!("b{}", i + 1), Variant::Baseline, (4, 128, 4), n, 0);
        write_run(&p, &format!("d{}", i + 1), Variant::Doped, (4, 128, 4), n, n / 2);
    }
    // The shape of the paper's XSmall (6 layers, d 768, 12 heads): Table 1 shows this run's loss.
    write_run(&p, "xsmall", Variant::Baseline, (6, 768, 12), 42_528_768, 0);
    p
}

#[test]
fn the_report_answers_first_and_has_the_papers_figures_and_tables() {
    let p = study();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = p.artifact("report");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    for figure in figures() {
        assert!(html.contains(&format!("<figure id=\"{figure}\"><svg")), "{figure} missing from report.html");
        let png = std::fs::read(report.join(format!("figures/{figure}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000, "{figure}.png is a real image");
    }
    assert_eq!(html.matches("<svg").count(), figures().len());
    // The answer comes first: the baselines' law and the doped family against it, with intervals.
    let answer =
        html.split("<p class=\"answer\">").nth(1).and_then(|s| s.split("</p>").next()).expect("an answer paragraph");
    assert!(html.find("<p class=\"answer\">") < html.find("<figure"), "the answer is above the figures");
    assert!(answer.contains("The baselines (4 sizes, 1.00M–42.53M trainable non-embedding parameters) follow L = (C_c / C)^α on C = 6·N·D with α = 0.05"), "{answer}");
    assert!(answer.contains("doped models 0.") && answer.contains("× ["), "{answer}");
    // Rendered, not markup: no Markdown syntax in the HTML, counts as people write them.
    assert!(!html.contains('*') && !html.contains("|---"), "unrendered markdown in the HTML");
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    // Table 1's XSmall row carries our count and this study's run of that shape; the others say they were not run.
    let xsmall = md.lines().find(|l| l.starts_with("| 1 | XSmall |")).unwrap();
    assert!(xsmall.contains("| 42.53M | 0 | 0 | train[run=xsmall] |"), "{xsmall}");
    assert!(
        md.contains(
            "| 2 | Doped Medium | 23 | 1024 | 16 | 3e-4 | 40.9G | 151.16M | 138.49M | 0 | not in this study | – |"
        ),
        "{md}"
    );
    assert!(md.contains("| 3 | Structured Adaptive FastFood |"), "{md}");
    // The runs, with test loss beside validation loss.
    assert!(md.contains("| train[run=d1] | doped | 4 + 3 frozen | 128 | 4 | 1.00M | 500.0k | 0 |"), "{md}");
    assert!(md.contains("| val loss | test loss |"), "{md}");
    // The laws: the baseline's exponent with an interval; the doped family's multiplier under each cost model.
    let baseline = md.lines().find(|l| l.starts_with("| baseline | 4 | 4 |")).unwrap();
    assert!(baseline.contains(" [0.0"), "{baseline}");
    assert!(md.contains("| doped | C = 6·N_trainable·D: frozen parameters free, the paper's C = 6·N·B·S |"), "{md}");
    assert!(md.contains("Kaplan et al. 2020"), "{md}");
}

/// Injected into a copy of the report: for every figure, the size the
/// browser laid its SVG out at and how many marks it drew, written into
/// the DOM that `--dump-dom` prints.
const CHECK_SCRIPT: &str = r#"<script>
const rows = [...document.querySelectorAll('figure')].map(f => {
  const svg = f.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const marks = svg ? svg.querySelectorAll('circle, polyline, path, line, rect').length : 0;
  const texts = svg ? [...svg.querySelectorAll('text')].filter(t => t.getComputedTextLength() > 0).length : 0;
  return [f.id, Math.round(box.width), Math.round(box.height), marks, texts].join(' ');
});
const pre = document.createElement('pre');
pre.id = 'figure-check';
pre.textContent = rows.join('\n');
document.body.appendChild(pre);
</script></body>"#;

#[test]
fn the_html_report_renders_every_figure_in_headless_chromium() {
    let chromium = common::chromium();
    let p = study();
    assert_eq!(p.sm(&["run"]).code, 0);
    let html = std::fs::read_to_string(p.artifact("report").join("report.html")).unwrap();
    let page = p.path().join("check.html");
    std::fs::write(&page, html.replace("</body>", CHECK_SCRIPT)).unwrap();
    let profile = p.path().join("chromium-profile");
    let out = Command::new(&chromium)
        .args(common::HEADLESS_CHROMIUM)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let check =
        dom.split("<pre id=\"figure-check\">").nth(1).and_then(|s| s.split("</pre>").next()).unwrap_or_else(|| {
            panic!("Chromium printed no check (exit {:?}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        });
    eprintln!("{check}");
    let rows: Vec<Vec<&str>> = check.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows.iter().map(|r| r[0]).collect::<Vec<_>>(), figures(), "{check}");
    for row in rows {
        let [id, width, height, marks, texts] = row[..] else { panic!("{check}") };
        let number = |v: &str| v.parse::<u32>().unwrap();
        assert!(number(width) >= 600 && number(height) >= 300, "{id} is laid out at {width}×{height}");
        assert!(number(marks) >= 20, "{id}: only {marks} marks drawn");
        assert!(number(texts) >= 8, "{id}: only {texts} labels with a width (title, axes, ticks, legend)");
    }
}
