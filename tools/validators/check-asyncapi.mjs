// Parses an AsyncAPI document with @asyncapi/parser (the ecosystem's reference parser) and
// exits non-zero on any diagnostic of severity error, printing each one.
//   node check-asyncapi.mjs <file-or-url>
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const source = process.argv[2];
if (!source) {
  console.error("usage: node check-asyncapi.mjs <file-or-url>");
  process.exit(2);
}
const text = /^https?:\/\//.test(source)
  ? await (await fetch(source)).text()
  : await readFile(source, "utf8");

const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  const level = ["error", "warning", "info", "hint"][d.severity] ?? d.severity;
  console.log(`${level}: ${d.code}: ${d.message} at /${d.path.join("/")}`);
}
if (!document || errors.length > 0) {
  console.error(`AsyncAPI: ${errors.length} error(s) in ${source}`);
  process.exit(1);
}
console.log(`AsyncAPI: ${source} parses (${diagnostics.length} non-error diagnostic(s))`);
