// Lints Cypher statements with Neo4j's own linter (@neo4j-cypher/language-support).
// stdin:  {"schema": {"labels": [...], "relationshipTypes": [...], "propertyKeys": [...]},
//          "statements": [{"name", "query", "parameters"}]}
// stdout: [{"name", "diagnostics": [{"severity", "message", "offsets"}]}], one entry per statement.
import { readFileSync } from 'node:fs';
import { lintCypherQuery, testData } from '@neo4j-cypher/language-support';

const input = JSON.parse(readFileSync(0, 'utf8'));
// The package's bundled registry of Neo4j 5 functions and procedures: with it the linter
// also reports unknown or misspelt functions, not only syntax and semantic errors.
const { functions, procedures } = testData.mockSchema;
const results = input.statements.map(({ name, query, parameters }) => {
  const dbSchema = { ...input.schema, parameters, functions, procedures };
  const { diagnostics } = lintCypherQuery(query, dbSchema);
  return {
    name,
    diagnostics: diagnostics.map((d) => ({ severity: d.severity, message: d.message, offsets: d.offsets })),
  };
});
process.stdout.write(JSON.stringify(results) + '\n');
