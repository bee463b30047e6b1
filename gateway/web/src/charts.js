// Charts (Chart.js), each with a text alternative for screen readers.
import {
  BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController,
  LineElement, PointElement, Tooltip,
} from "chart.js";
import { h } from "./ui.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController,
  LineElement, PointElement, Tooltip, Legend);

const COLORS = ["#3559e0", "#e0703a", "#2a9d8f", "#9b5de5", "#e63946", "#6c757d"];

function frame(title, description) {
  const canvas = h("canvas", { role: "img", "aria-label": `${title}. ${description}` });
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, title), h("div", { class: "chart-box" }, canvas));
  return { figure, canvas };
}

// `valueAxis` goes to the value scale's options, e.g. {min: 0, max: 5} or whole-number ticks.
export function barChart(title, labels, values, { horizontal = false, description = "", valueAxis = {} } = {}) {
  const text = description || labels.map((l, i) => `${l}: ${values[i]}`).join(", ");
  const { figure, canvas } = frame(title, text);
  new Chart(canvas, {
    type: "bar",
    data: { labels, datasets: [{ label: title, data: values, backgroundColor: COLORS[0], maxBarThickness: 56 }] },
    options: {
      indexAxis: horizontal ? "y" : "x", responsive: true, maintainAspectRatio: false,
      animation: false, plugins: { legend: { display: false } },
      scales: { [horizontal ? "x" : "y"]: valueAxis },
    },
  });
  return figure;
}

// A line chart that grows as points arrive: series is a list of names.
export function liveLineChart(title, series, { xLabel = "step" } = {}) {
  const { figure, canvas } = frame(title, `${series.join(" and ")} by ${xLabel}, updated live`);
  const chart = new Chart(canvas, {
    type: "line",
    data: { datasets: series.map((name, i) => ({
      label: name, data: [], borderColor: COLORS[i], backgroundColor: COLORS[i], pointRadius: 2, tension: 0.2,
    })) },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false, parsing: false,
      scales: { x: { type: "linear", title: { display: true, text: xLabel } }, y: { beginAtZero: false } },
    },
  });
  return {
    figure,
    add(seriesIndex, x, y) {
      chart.data.datasets[seriesIndex].data.push({ x, y });
      chart.update("none");
    },
    points: (seriesIndex) => chart.data.datasets[seriesIndex].data.length,
  };
}
