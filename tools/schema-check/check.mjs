// Validates JSON instances against the shipped plan schemas with Ajv, the JavaScript JSON
// Schema validator most editors' tooling builds on, so the tests can compare it with
// Python's jsonschema and with the plan loader. ECMA-262 regular expressions with the "u"
// flag, as Ajv uses them by default.
//
//   node check.mjs SCHEMA.json [SCHEMA.json ...]
//
// Reads one JSON request a line on stdin, answers one JSON line each on stdout:
//   {"schema": N, "data": ...}      -> {"valid": bool, "errors": ["/path: message", ...]}
//   {"pattern": "...", "text": ...} -> {"match": bool}   (RegExp(pattern, "u").test(text))
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const ajv = new Ajv2020({ allErrors: true }); // strict by default: unknown keywords throw
addFormats(ajv);
const validators = process.argv.slice(2).map((file) =>
  ajv.compile(JSON.parse(readFileSync(file, "utf8"))),
);

function answer(request) {
  if ("pattern" in request) {
    return { match: new RegExp(request.pattern, "u").test(request.text) };
  }
  const validate = validators[request.schema];
  const valid = validate(request.data);
  const errors = (validate.errors || []).map((e) => `${e.instancePath}: ${e.message}`);
  return { valid, errors };
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line.trim() === "") continue;
  let reply;
  try {
    reply = answer(JSON.parse(line));
  } catch (err) {
    reply = { error: String(err) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
