// The wizard funnel, recorded through the insights API as the user walks it: each step
// once per wizard run (a reload does not count it twice), with the time since the step
// before it; a failure is recorded under its step with its category. Counting never
// gets in the user's way: a failed record is dropped.
import { call } from "./api.js";
import { wizard } from "./state.js";

export function recordStep(project, step, { resource = "", failureCategory = "" } = {}) {
  const state = wizard.get();
  const recorded = state.funnel || [];
  const key = failureCategory ? `${step}:${failureCategory}:${resource}` : step;
  if (recorded.includes(key)) return Promise.resolve();
  const now = Date.now();
  const event = { step: `FUNNEL_STEP_${step.toUpperCase()}` };
  if (resource) event.resource = resource;
  if (failureCategory) event.failure_category = failureCategory;
  if (state.funnelAt) event.step_duration = `${((now - state.funnelAt) / 1000).toFixed(3)}s`;
  // A failure does not end the step: its time runs on until the step succeeds.
  wizard.set({ funnel: [...recorded, key], ...(failureCategory ? {} : { funnelAt: now }) });
  return call("InsightsService.RecordFunnelEvent", { parent: `projects/${project}`, funnel_event: event })
    .catch(() => {});
}

// "projects/p/tuningJobs/j" → "p"
export const projectOf = (name) => name.split("/")[1];

// A job's failure category as the funnel counts it ("FAILURE_CATEGORY_OUT_OF_MEMORY" → "OUT_OF_MEMORY").
export function failureCategory(job) {
  const category = job.failure?.category;
  return !category || category === "FAILURE_CATEGORY_UNSPECIFIED" ? "INTERNAL" : category.replace(/^FAILURE_CATEGORY_/, "");
}
