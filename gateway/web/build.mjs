// Builds the dashboard into dist/: one bundled, minified script (our modules and
// Chart.js), the page, the styles, and Swagger UI's files for the API docs.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

const dist = new URL("./dist/", import.meta.url).pathname;
rmSync(dist, { recursive: true, force: true });
mkdirSync(`${dist}swagger`, { recursive: true });

await build({
  entryPoints: ["src/main.js"],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: "esm",
  target: ["es2022"],
  outfile: `${dist}app.js`,
  logLevel: "warning",
});
for (const file of ["index.html", "styles.css", "favicon.svg"]) cpSync(`src/${file}`, `${dist}${file}`);
for (const file of ["swagger-ui-bundle.js", "swagger-ui.css"]) {
  cpSync(`node_modules/swagger-ui-dist/${file}`, `${dist}swagger/${file}`);
}
