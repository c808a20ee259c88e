"""Validates JSON documents (an array on stdin) against a JSON schema (argv[1]) with jsonschema, which
kubernetes-validate's virtualenv carries. One line per document; each error names the field's path.
Exit 1 on any error."""
import json
import sys

import jsonschema

schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft7Validator(schema)
failed = 0
for doc in json.load(sys.stdin):
    name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    if not errors:
        print(f"ok {name}")
        continue
    failed += 1
    for e in errors:
        path = ".".join(str(p) for p in e.path) or "(top level)"
        print(f"FAIL {name}: {path}: {e.message}")
sys.exit(1 if failed else 0)
