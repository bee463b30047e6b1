// The admin page: the success report (custom models created against the target, the
// wizard funnel, failures, satisfaction and comments) and, read-only, the rollout and the
// experiments. The navigation offers it to admin keys only; the API decides, and anyone
// else who opens /admin gets the refusal explained.
import { call } from "./api.js";
import { barChart } from "./charts.js";
import { STEPS as SURVEY_STEPS } from "./steps/survey.js";
import { clear, enumLabel, errorBox, fmtDuration, fmtInt, h, num, pct } from "./ui.js";

const COUNT_AXIS = { ticks: { precision: 0 } };
const SCORE_AXIS = { min: 0, max: 5 };
// Satisfaction groups are `all`, a month `2026-11`, or `experiment/variant`.
const isMonth = (g) => /^\d{4}-\d{2}$/.test(g.group);
const isVariant = (g) => g.group.includes("/");

const day = (ts) => (ts ? String(ts).slice(0, 10) : "—");
const month = (ts) => String(ts).slice(0, 7);
const score = (v) => num(v).toFixed(1);
const capitalised = (text) => text.charAt(0).toUpperCase() + text.slice(1);
const stepLabel = (step) => capitalised(enumLabel(step, "FUNNEL_STEP_"));

function section(id, title, ...children) {
  return h("section", { class: "card report", "aria-labelledby": id }, h("h2", { id }, title), children);
}

// A table whose first cell in each row heads that row; wide tables scroll inside their box.
function table(caption, headers, rows) {
  return h("div", { class: "scroll" }, h("table", { class: "table" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
    h("tbody", {}, rows.map(([head, ...cells]) =>
      h("tr", {}, h("th", { scope: "row" }, head), cells.map((cell) => h("td", {}, cell)))))));
}

export async function renderAdmin(container, { project }) {
  const body = h("div", {}, h("p", {}, "Loading…"));
  clear(container, h("h1", {}, "Success metrics"), body);
  const [report, rollout, experiments] = await Promise.allSettled([
    call("InsightsService.GetSuccessReport", { name: "successReport" }),
    call("InsightsService.GetRolloutConfig", { name: "rolloutConfig" }),
    call("InsightsService.ListExperiments", { page_size: 50 }),
  ]);
  if (report.status === "rejected") {
    const err = report.reason;
    return clear(body, err.info?.reason === "ADMIN_KEY_REQUIRED"
      ? errorBox({ message: `You are signed in to project ${project} with a key that is not an admin key. `
          + "An operator makes one with python -m services.insights_svc.admin_key PROJECT; "
          + "sign out and sign in with it to see this page." },
        { title: "This page needs an admin API key." })
      : errorBox(err, { title: "Could not load the success report" }));
  }
  const r = report.value;
  clear(body, modelsCreated(r), funnel(r), failures(r), satisfaction(r), comments(r),
    rolloutAndExperiments(rollout, experiments));
}

function modelsCreated(r) {
  const made = num(r.models_created);
  const target = num(r.models_target);
  const months = r.models_per_month || [];
  return section("models-h", "Custom models created",
    h("p", { class: "big-number" }, `${fmtInt(made)} of ${fmtInt(target)}`),
    h("progress", { max: Math.max(target, 1), value: Math.min(made, target), "aria-label": "Models created against the target" }),
    h("p", {}, r.target_start_time
      ? `${pct(made / Math.max(target, 1), 0)} of the target of ${fmtInt(target)} models between ${day(r.target_start_time)} and ${day(r.target_end_time)}.`
      : `The target of ${fmtInt(target)} models counts from the first model saved.`),
    months.length
      ? barChart("Models created per month", months.map((m) => month(m.period_start)), months.map((m) => num(m.count)), { valueAxis: COUNT_AXIS })
      : h("p", { class: "muted" }, "No models saved yet."));
}

function funnel(r) {
  const steps = r.funnel || [];
  // The services' own records: what happened even where no client reported the step.
  const recorded = Object.fromEntries((r.recorded_funnel || []).map((f) => [f.step, f.projects]));
  const unavailable = r.unavailable_sources || [];
  return section("funnel-h", "Wizard funnel",
    barChart("Projects reaching each step", steps.map((f) => stepLabel(f.step)), steps.map((f) => num(f.projects)),
      { horizontal: true, valueAxis: COUNT_AXIS }),
    table("Each step of the wizard: projects that reached it, the share lost since the step before, the mean time "
      + "spent in it, and the projects the services' own records show there",
      ["Step", "Projects", "Drop-off", "Mean time", "In records"],
      steps.map((f, i) => [stepLabel(f.step), fmtInt(f.projects), i ? pct(f.drop_off) : "—",
        num(f.mean_step_seconds) ? fmtDuration(num(f.mean_step_seconds)) : "—",
        f.step in recorded ? fmtInt(recorded[f.step]) : "—"])),
    h("p", { class: "muted" }, `The services' records cover ${fmtInt(r.projects_counted)} project(s)`,
      unavailable.length ? `; not available: ${unavailable.join(", ")}.` : "."));
}

function failures(r) {
  const counts = Object.entries(r.failures_by_category || {}).map(([c, n]) => [c, num(n)]).sort((a, b) => b[1] - a[1]);
  return section("failures-h", "Where failures cluster",
    counts.length ? [
      barChart("Failure reports per category", counts.map(([c]) => c), counts.map(([, n]) => n), { horizontal: true, valueAxis: COUNT_AXIS }),
      table("Failure reports per category, most frequent first", ["Category", "Reports"],
        counts.map(([c, n]) => [h("code", {}, c), fmtInt(n)])),
    ] : h("p", { class: "muted" }, "No failures reported."));
}

function satisfaction(r) {
  const groups = r.satisfaction || [];
  const all = groups.find((g) => g.group === "all");
  const months = groups.filter(isMonth);
  const variants = groups.filter(isVariant);
  if (!all || !num(all.responses)) {
    return section("satisfaction-h", "Satisfaction", h("p", { class: "muted" },
      `No survey answers yet${all ? ` (${fmtInt(all.skips)} skipped)` : ""}.`));
  }
  // Spaces around the slash let a long `experiment/variant` wrap in a narrow column.
  const named = (g) => (g.group === "all" ? "Everyone" : g.group.replace("/", " / "));
  const easeGroups = [all, ...variants];
  return section("satisfaction-h", "Satisfaction",
    h("p", { class: "big-number" }, `${score(all.mean_overall)} / 5`),
    h("p", {}, `Mean overall satisfaction from ${fmtInt(all.responses)} answer(s); ${fmtInt(all.skips)} survey(s) skipped.`),
    barChart("Mean satisfaction per month", months.map((g) => g.group), months.map((g) => num(g.mean_overall)), {
      valueAxis: SCORE_AXIS,
      description: months.map((g) => `${g.group}: ${score(g.mean_overall)} from ${fmtInt(g.responses)} answer(s)`).join(", "),
    }),
    table("Satisfaction by month and by experiment variant (models created: projects in that variant)",
      ["Group", "Answers", "Skipped", "Mean (1–5)", "Models created"],
      [all, ...months, ...variants].map((g) => [named(g), fmtInt(g.responses), fmtInt(g.skips),
        num(g.responses) ? score(g.mean_overall) : "—", isVariant(g) ? fmtInt(g.models_created) : "—"])),
    table("Mean ease of each wizard step, 1 (very hard) to 5 (very easy)", ["Step", ...easeGroups.map(named)],
      SURVEY_STEPS.map(([step, label]) => {
        const key = step.replace("WIZARD_STEP_", "");
        return [label, ...easeGroups.map((g) => (key in (g.mean_ease || {}) ? score(g.mean_ease[key]) : "—"))];
      })));
}

function comments(r) {
  const list = r.comments || [];
  return section("comments-h", "Comments",
    h("p", { class: "muted" }, "The latest answers to “What would you change?”, newest first, with personal data masked."),
    list.length
      ? h("ul", { class: "comments" }, list.map((c) => h("li", {},
        h("blockquote", {}, c.text),
        h("p", { class: "muted" }, `${c.overall ? `${c.overall} / 5 · ` : ""}${day(c.create_time)}`))))
      : h("p", { class: "muted" }, "No comments yet."));
}

function rolloutAndExperiments(rollout, experiments) {
  return section("rollout-h", "Rollout and experiments",
    h("p", { class: "muted" }, "Read-only here: an admin key changes them through the API (mtw insights rollout set)."),
    h("h3", {}, "Who can use the wizard"), readable(rollout, rolloutFacts),
    h("h3", {}, "Experiments"), readable(experiments, experimentList));
}

// A settled call's result shown by `show`, or why it could not be read.
const readable = (result, show) => (result.status === "fulfilled" ? show(result.value)
  : h("p", { class: "muted" }, `Could not be read: ${result.reason.message}`));

function rolloutFacts(c) {
  const configured = num(c.revision) > 0;
  const allowed = c.allowed_projects || [];
  return h("dl", { class: "facts" },
    h("dt", {}, "Projects allowed"),
    h("dd", {}, configured ? `${num(c.rollout_percent)} % of projects` : "Everyone (no rollout configured)"),
    h("dt", {}, "Beta projects"), h("dd", {}, allowed.length ? allowed.join(", ") : "none"),
    h("dt", {}, "Contact"), h("dd", {}, c.contact || "—"),
    h("dt", {}, "Last changed"), h("dd", {}, configured ? `${day(c.update_time)} (revision ${fmtInt(c.revision)})` : "never"));
}

function experimentList(response) {
  const items = response.experiments || [];
  if (!items.length) return h("p", { class: "muted" }, "No experiments.");
  // A list rather than a table: it reflows at phone width.
  return h("ul", { class: "list" }, items.map((e) => {
    const variants = e.variants || [];
    const total = variants.reduce((sum, v) => sum + num(v.weight), 0);
    return h("li", {}, h("strong", {}, e.name.split("/").pop()), e.description ? ` — ${e.description}` : "",
      h("br"), "Variants: ", variants.map((v) => `${v.id} (${pct(num(v.weight) / total, 0)})`).join(", "),
      h("span", { class: "muted" }, ` · created ${day(e.create_time)}`));
  }));
}
