// The dashboard: sign-in, the landing page, the four-step wizard, and the admin page.
import { renderAdmin } from "./admin.js";
import { call, loadOperations, session, signIn, signOut } from "./api.js";
import { errorBox, fmtInt, h, clear, nextId, STATE_LABELS, TASK_LABELS } from "./ui.js";
import { renderData } from "./steps/data.js";
import { renderParameters } from "./steps/parameters.js";
import { renderTrain } from "./steps/train.js";
import { renderSave } from "./steps/save.js";
import { wizard } from "./state.js";

export const STEPS = [
  { path: "/wizard/data", title: "Data", render: renderData },
  { path: "/wizard/parameters", title: "Parameters", render: renderParameters },
  { path: "/wizard/train", title: "Train & evaluate", render: renderTrain },
  { path: "/wizard/save", title: "Save & use", render: renderSave },
];

const main = () => document.getElementById("main");
let project = null;
let isAdmin = false;
let experiment = "";  // the A/B experiment whose variant shapes the wizard

export function navigate(path) {
  history.pushState({}, "", path);
  route();
}

function link(path, text, attrs = {}) {
  return h("a", { href: path, ...attrs, onclick: (e) => { e.preventDefault(); navigate(path); } }, text);
}

async function route() {
  const path = location.pathname;
  const s = await session();
  project = s.signed_in ? s.project : null;
  isAdmin = Boolean(s.signed_in && s.admin);
  experiment = (s.signed_in && s.wizard_experiment) || "";
  renderAccount();
  if (!project) return renderSignIn();
  if (path === "/signin") return navigate("/");
  const stepIndex = STEPS.findIndex((st) => path.startsWith(st.path));
  if (path === "/wizard" || path === "/wizard/") return navigate(STEPS[0].path);
  if (stepIndex >= 0) return renderStep(stepIndex);
  if (path === "/admin") return renderAdminPage();
  return renderLanding();
}

function renderAccount() {
  const nav = document.getElementById("account");
  if (!project) return clear(nav);
  clear(nav,
    h("span", { class: "project" }, "Project ", h("strong", {}, project)),
    // Offered to admin keys; /admin typed by anyone else explains the refusal.
    isAdmin ? link("/admin", "Admin", location.pathname === "/admin" ? { "aria-current": "page" } : {}) : null,
    h("a", { href: "/docs" }, "API docs"),
    h("button", { type: "button", class: "secondary small", onclick: async () => {
      await signOut();
      wizard.reset();
      navigate("/signin");
    } }, "Sign out"));
}

function focusMain(heading) {
  document.title = `${heading} — MTW`;
  const h1 = main().querySelector("h1");
  (h1 || main()).setAttribute("tabindex", "-1");
  (h1 || main()).focus();
}

function renderSignIn() {
  if (location.pathname !== "/signin") history.replaceState({}, "", "/signin");
  const projectId = nextId("project");
  const keyId = nextId("key");
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card narrow", novalidate: true },
    h("h1", {}, "Sign in"),
    h("p", {}, "Use your project's API key. ", h("code", {}, "make run"),
      " prints a development key (project ", h("code", {}, "dev"), ")."),
    h("label", { for: projectId }, "Project"),
    h("input", { id: projectId, name: "project", value: "dev", required: true, autocomplete: "username" }),
    h("label", { for: keyId }, "API key"),
    h("input", { id: keyId, name: "api_key", type: "password", required: true, autocomplete: "current-password",
      placeholder: "mtw_…" }),
    status,
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear(status, "Checking the key…");
    try {
      await signIn(form.project.value.trim(), form.api_key.value.trim());
      form.api_key.value = "";
      navigate("/");
    } catch (err) {
      clear(status, errorBox(err, { title: err.httpStatus === 401 ? "That key was not accepted" : "Could not sign in" }));
    }
  });
  clear(main(), form);
  focusMain("Sign in");
}

async function renderLanding() {
  const models = h("section", { "aria-labelledby": "models-h" }, h("h2", { id: "models-h" }, "Models"), h("p", {}, "Loading…"));
  const jobs = h("section", { "aria-labelledby": "jobs-h" }, h("h2", { id: "jobs-h" }, "Training jobs"), h("p", {}, "Loading…"));
  clear(main(),
    h("div", { class: "hero" },
      h("h1", {}, "Your custom models"),
      h("p", {}, "Turn your own examples into a model: upload data, pick settings, watch it train, then use it."),
      h("button", { type: "button", class: "primary big", onclick: () => { wizard.reset(); navigate(STEPS[0].path); } },
        "Create Custom Model")),
    h("div", { class: "columns" }, models, jobs));
  focusMain("Your custom models");
  await loadOperations();
  call("RegistryService.ListRegisteredModels", { parent: `projects/${project}`, page_size: 20 })
    .then((r) => {
      const list = r.registered_models || [];
      clear(models, h("h2", { id: "models-h" }, "Models"),
        list.length ? h("ul", { class: "list" }, list.map((m) => h("li", {},
          h("strong", {}, m.display_name || m.name.split("/").pop()), " ",
          h("span", { class: "muted" }, TASK_LABELS[m.task] || ""), " · ",
          `${fmtInt(m.version_count)} version(s)`,
          Object.keys(m.aliases || {}).length ? h("span", { class: "muted" }, " · aliases: ", Object.keys(m.aliases).join(", ")) : null)))
          : h("p", { class: "muted" }, "No models yet. Press Create Custom Model to make your first."));
    })
    .catch((err) => clear(models, h("h2", { id: "models-h" }, "Models"), h("p", { class: "muted" }, err.message)));
  call("TuningService.ListTuningJobs", { parent: `projects/${project}`, page_size: 20 })
    .then((r) => {
      const list = r.tuning_jobs || [];
      clear(jobs, h("h2", { id: "jobs-h" }, "Training jobs"),
        list.length ? h("table", { class: "table" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Job"), h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Progress"))),
          h("tbody", {}, list.map((j) => h("tr", {},
            h("td", {}, link("/wizard/train", j.display_name || j.name.split("/").pop(), {
              onclick: (e) => { e.preventDefault(); wizard.set({ job: j.name, version: j.dataset_version, task: j.task }); navigate("/wizard/train"); },
            })),
            h("td", {}, h("span", { class: `state ${j.state}` }, STATE_LABELS[j.state] || j.state)),
            h("td", {}, `${Math.round(Number(j.progress?.fraction_done || 0) * 100)} %`)))))
          : h("p", { class: "muted" }, "No training jobs yet."));
    })
    .catch((err) => clear(jobs, h("h2", { id: "jobs-h" }, "Training jobs"), h("p", { class: "muted" }, err.message)));
}

async function renderAdminPage() {
  const loading = renderAdmin(main(), { project });
  focusMain("Success metrics");  // the heading is there before the report arrives
  await loading;
}

function stepper(active) {
  return h("nav", { class: "stepper", "aria-label": "Wizard steps" },
    h("ol", {}, STEPS.map((st, i) => {
      const reachable = wizard.reachable(i);
      const label = h("span", {}, h("span", { class: "num" }, String(i + 1)), st.title);
      return h("li", { class: i === active ? "active" : i < active ? "done" : "" },
        i === active ? h("span", { "aria-current": "step" }, label)
          : reachable ? link(st.path, label) : h("span", { class: "disabled" }, label));
    })));
}

async function renderStep(index) {
  if (!wizard.reachable(index)) return navigate(STEPS[0].path);
  await loadOperations();
  const body = h("div", { class: "step-body" });
  clear(main(), stepper(index), body);
  const step = STEPS[index];
  try {
    await step.render(body, { project, experiment, navigate, next: () => navigate(STEPS[index + 1].path), back: () => navigate(STEPS[index - 1].path) });
  } catch (err) {
    body.append(errorBox(err));
  }
  focusMain(step.title);
}

window.addEventListener("popstate", route);
route();
