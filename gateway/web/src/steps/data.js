// Step 1 — Data: upload (drag and drop or a file picker) with progress, then what the
// dataset service found: format and task, column mapping (editable), the quality
// report with charts and warnings, and a preview. A refused file shows every problem
// by line and field.
import { ApiError, call, upload } from "../api.js";
import { barChart } from "../charts.js";
import {
  announce, clear, errorBox, fmtBytes, fmtInt, FORMAT_LABELS, h, nextId, num, pct, slug, TASK_LABELS,
} from "../ui.js";
import { recordStep } from "../funnel.js";
import { wizard } from "../state.js";

const ROLES = [
  ["", "Not used"], ["text", "Text"], ["label", "Label"], ["messages", "Chat messages"],
  ["prompt", "Prompt"], ["input", "Input"], ["response", "Response"], ["group", "Group (keep together in one split)"],
];

export async function renderData(root, { project, next }) {
  const state = wizard.get();
  let file = null;
  const fileInputId = nextId("file");
  const nameId = nextId("name");
  const result = h("div", { class: "result" });
  const progress = h("progress", { max: 100, value: 0, "aria-label": "Upload progress" });
  const progressText = h("span", { class: "muted", "aria-live": "polite" });
  const progressRow = h("div", { class: "progress-row", hidden: true }, progress, progressText);
  const fileInput = h("input", { id: fileInputId, type: "file", class: "visually-hidden",
    accept: ".csv,.tsv,.jsonl,.json,.parquet,.txt", "aria-describedby": `${fileInputId}-help` });
  const chosen = h("p", { class: "chosen", "aria-live": "polite" }, "No file chosen yet.");
  const drop = h("div", { class: "dropzone" },
    h("label", { for: fileInputId, class: "drop-label" },
      h("strong", {}, "Drop your file here"), h("span", {}, " or "), h("span", { class: "link" }, "choose a file")),
    h("p", { id: `${fileInputId}-help`, class: "muted" },
      "CSV, TSV, JSON Lines, JSON, Parquet or plain text. Any size: the file streams to MTW."),
    fileInput, chosen);
  const nameInput = h("input", { id: nameId, name: "dataset_name", placeholder: "e.g. Support tickets",
    value: state.datasetName || "" });
  const uploadButton = h("button", { type: "button", class: "primary", disabled: true }, "Upload and check");

  const choose = (f) => {
    file = f;
    clear(chosen, f ? `${f.name} — ${fmtBytes(f.size)}` : "No file chosen yet.");
    uploadButton.disabled = !f;
    if (f && !nameInput.value) nameInput.value = f.name.replace(/\.[^.]+$/, "");
  };
  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer.files[0]) choose(e.dataTransfer.files[0]); });

  async function send(options = {}) {
    if (!file) return;
    uploadButton.disabled = true;
    progressRow.hidden = false;
    clear(result);
    try {
      let dataset = wizard.get().dataset;
      if (!dataset) {
        const created = await call("DatasetService.CreateDataset", {
          parent: `projects/${project}`, dataset_id: slug(nameInput.value, "data"),
          dataset: { display_name: nameInput.value || file.name },
        });
        dataset = created.name;
        wizard.set({ dataset, datasetName: nameInput.value });
      }
      const request = { header: { parent: dataset, size_bytes: file.size, options: { file_name: file.name, ...options } } };
      const version = await upload("DatasetService.UploadDatasetVersion", request, file, (sent, total, done) => {
        progress.value = total ? Math.round((100 * sent) / total) : 0;
        clear(progressText, done ? "Sent. Checking every row…" : `${fmtBytes(sent)} of ${fmtBytes(total)}`);
      });
      clear(progressText, "Done.");
      wizard.set({ version: version.name, task: version.task, fileName: file.name });
      recordStep(project, "dataset_valid", { resource: version.name });
      announce(`Checked ${fmtInt(version.quality_report?.row_count)} rows.`);
      await showVersion(version);
    } catch (err) {
      clear(progressText, "");
      if (err instanceof ApiError && err.httpStatus < 500) {
        recordStep(project, "dataset_valid", { failureCategory: err.info.reason || err.status, resource: file.name });
      }
      showRefusal(err);
    } finally {
      uploadButton.disabled = !file;
    }
  }
  uploadButton.addEventListener("click", () => send());

  function showRefusal(err) {
    if (!(err instanceof ApiError) || !err.violations.length) {
      clear(result, errorBox(err, { title: "The upload did not go through" }));
      return;
    }
    const total = num(err.info.metadata?.total_errors) || err.violations.length;
    clear(result, h("div", { class: "error", role: "alert" },
      h("h2", {}, "This file cannot be used yet"),
      h("p", {}, err.message),
      h("p", {}, `${fmtInt(total)} problem(s) in total`, total > err.violations.length ? ` (the first ${err.violations.length} are listed)` : "",
        ". Fix them in the file and upload it again; nothing was kept."),
      h("table", { class: "table errors" },
        h("caption", {}, "Problems by line"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Line"), h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Problem"))),
        h("tbody", {}, err.violations.map((v) => {
          const [, line = "", column = ""] = /^line:(\d+)(?::(.*))?$/.exec(v.field) || [null, "", v.field];
          return h("tr", {}, h("td", {}, line), h("td", {}, column), h("td", {}, v.description));
        })))));
    result.querySelector("h2").setAttribute("tabindex", "-1");
    result.querySelector("h2").focus();
  }

  async function showVersion(version) {
    const report = version.quality_report || {};
    const summary = h("section", { class: "card", "aria-labelledby": "found-h" },
      h("h2", { id: "found-h" }, "What we found"),
      h("dl", { class: "facts" },
        h("dt", {}, "Format"), h("dd", {}, FORMAT_LABELS[version.format] || version.format),
        h("dt", {}, "Task"), h("dd", {}, TASK_LABELS[version.task] || version.task),
        h("dt", {}, "Rows"), h("dd", {}, fmtInt(report.row_count)),
        h("dt", {}, "Splits"), h("dd", {}, (version.splits || []).map((s) => `${s.name} ${fmtInt(s.row_count)}`).join(" · ")),
        h("dt", {}, "Size"), h("dd", {}, fmtBytes(version.size_bytes))),
      h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: next }, "Continue to parameters")));
    clear(result, summary, mappingEditor(version), qualityReport(version), await preview(version));
  }

  function mappingEditor(version) {
    const columns = version.quality_report?.columns || [];
    const selects = columns.map((c) => {
      const id = nextId("map");
      const select = h("select", { id, name: c.name }, ROLES.map(([value, label]) =>
        h("option", { value, selected: (c.mapped_to || "") === value }, label)));
      return { column: c, id, select };
    });
    const apply = h("button", { type: "button", class: "secondary" }, "Apply mapping (checks the file again)");
    apply.addEventListener("click", () => {
      const options = {};
      for (const { column, select } of selects) {
        if (select.value === "group") options.split = { group_column: column.name };
        else if (select.value) (options.column_mapping ||= {})[select.value] = column.name;
      }
      send(options);
    });
    return h("section", { class: "card", "aria-labelledby": "map-h" },
      h("h2", { id: "map-h" }, "Column mapping"),
      h("p", { class: "muted" }, "Which column holds what. Change it if the guess is wrong."),
      h("table", { class: "table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Column"), h("th", { scope: "col" }, "Used as"), h("th", { scope: "col" }, "Empty cells"))),
        h("tbody", {}, selects.map(({ column, id, select }) => h("tr", {},
          h("th", { scope: "row" }, h("label", { for: id }, column.name)), h("td", {}, select), h("td", {}, fmtInt(column.empty_count)))))),
      h("div", { class: "actions" }, apply));
  }

  function qualityReport(version) {
    const report = version.quality_report || {};
    const labels = report.label_distribution || [];
    const hist = report.char_length || {};
    const warnings = report.warnings || [];
    const charts = h("div", { class: "charts" });
    if (labels.length) {
      charts.append(barChart("Label distribution", labels.map((l) => l.label), labels.map((l) => num(l.count)),
        { horizontal: labels.length > 6 }));
    }
    if ((hist.buckets || []).length) {
      charts.append(barChart("Text length (characters)", hist.buckets.map((b) => `${fmtInt(b.lower)}–${fmtInt(b.upper)}`),
        hist.buckets.map((b) => num(b.count)), { description: `median ${fmtInt(hist.p50)}, 95th percentile ${fmtInt(hist.p95)}, longest ${fmtInt(hist.max)} characters` }));
    }
    return h("section", { class: "card", "aria-labelledby": "quality-h" },
      h("h2", { id: "quality-h" }, "Quality report"),
      charts,
      h("dl", { class: "facts" },
        h("dt", {}, "Exact duplicates"), h("dd", {}, fmtInt(report.exact_duplicate_rows)),
        h("dt", {}, "Near duplicates"), h("dd", {}, fmtInt(report.near_duplicate_rows)),
        h("dt", {}, "Shared between splits"), h("dd", {}, fmtInt(report.cross_split_duplicate_rows)),
        h("dt", {}, "Personal data"), h("dd", {}, (report.pii || []).length
          ? report.pii.map((p) => `${p.kind.replace("PII_KIND_", "").toLowerCase()} in ${fmtInt(p.row_count)} rows${p.redacted ? " (redacted)" : ""}`).join(", ")
          : "none found")),
      h("h3", {}, "Findings"),
      warnings.length ? h("ul", { class: "findings" }, warnings.map((w) => h("li", { class: w.severity },
        h("span", { class: "badge" }, w.severity === "SEVERITY_WARNING" ? "Warning" : "Note"), " ",
        w.message, " ", h("code", { class: "muted" }, w.code))))
        : h("p", {}, "No problems found."),
      labels.length ? h("details", {}, h("summary", {}, "Label counts as a table"),
        h("table", { class: "table" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Label"), h("th", { scope: "col" }, "Rows"), h("th", { scope: "col" }, "Share"))),
          h("tbody", {}, labels.map((l) => h("tr", {}, h("td", {}, l.label), h("td", {}, fmtInt(l.count)), h("td", {}, pct(l.fraction))))))) : null);
  }

  async function preview(version) {
    const section = h("section", { class: "card", "aria-labelledby": "preview-h" }, h("h2", { id: "preview-h" }, "Preview"));
    try {
      const page = await call("DatasetService.PreviewDatasetVersion", { name: version.name, split: "train", page_size: 8 });
      const text = (v) => (typeof v === "object" ? (Array.isArray(v) ? v.map((m) => (m.role ? `${m.role}: ${m.content}` : JSON.stringify(m))).join("\n") : JSON.stringify(v)) : String(v ?? ""));
      const cell = (v) => { const t = text(v); return t.length > 280 ? `${t.slice(0, 280)}…` : t; };
      section.append(h("div", { class: "scroll" }, h("table", { class: "table preview" },
        h("caption", {}, `${fmtInt(page.rows.length)} of ${fmtInt(page.total_rows)} training rows`),
        h("thead", {}, h("tr", {}, page.columns.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, page.rows.map((row) => h("tr", {}, page.columns.map((c) => h("td", {}, cell(row[c])))))))));
    } catch (err) {
      section.append(errorBox(err));
    }
    return section;
  }

  clear(root,
    h("h1", {}, "Step 1 — Your data"),
    h("p", { class: "lead" }, "Upload examples of what the model should learn. We check every row and tell you what we find."),
    h("section", { class: "card", "aria-labelledby": "upload-h" },
      h("h2", { id: "upload-h", class: "visually-hidden" }, "Upload"),
      h("label", { for: nameId }, "Dataset name"), nameInput,
      drop, progressRow,
      h("div", { class: "actions" }, uploadButton)),
    result);
  if (!state.version) recordStep(project, "wizard_started");
  if (state.version) {
    try {
      await showVersion(await call("DatasetService.GetDatasetVersion", { name: state.version }));
    } catch (err) {
      result.append(errorBox(err));
    }
  }
}
