/**
 * The shape of APEX's tables (their columns, types, collations and primary keys) as the backend
 * lays them out (backend.ts, DDL and LAYOUT_2), checked by every open's probe against what the
 * server's catalog says. A table changed by hand (a column dropped, renamed or retyped, a
 * collation changed, its primary key dropped) is refused with APEX_E_STORE_DAMAGED before
 * anything is read or written: read as it is, a value column retyped to text read as undefined
 * (APEX_E_INTERNAL) while writes went on storing text; a `codec` column dropped from a layout-2
 * schema was added again with 0 for every row, so every compressed value read as garbage; a
 * dropped primary key failed every write with a bare store error.
 */

/** The catalog's view of the schema's tables, selected by the probe in its one statement. */
export const SHAPE_COLUMNS = `ARRAY(SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
        || CASE WHEN co.collname IS NULL OR co.collname = 'default' THEN '' ELSE ' COLLATE "' || co.collname || '"' END
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_collation co ON co.oid = a.attcollation
      WHERE n.nspname = 'apex' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped),
    ARRAY(SELECT c.relname || ' (' || array_to_string(ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.position), ', ') || ')'
      FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'apex' AND i.indisprimary)`;

const C = 'text COLLATE "C"';

/** Each table's columns (name and type, as format_type and the collation read) and primary key, as backend.ts creates them. */
const SHAPES: Record<string, { columns: Array<[string, string]>; key?: string }> = {
  stores: { columns: [["project", C], ["revision", "bigint"], ["created", "timestamp with time zone"]], key: "project" },
  projects: { columns: [["project", C], ["revision", "bigint"], ["created", "timestamp with time zone"]], key: "project" },
  kv: { columns: [["project", C], ["path", C], ["value", "bytea"], ["codec", "smallint"]], key: "project, path" },
  log: { columns: [["project", C], ["first", "bigint"], ["paths", "text[]"], ["kinds", "text"], ["actor", "text"], ["time", "bigint"]], key: "project, first" },
  tables: { columns: [["project", C], ["name", C], ["keys", "text"], ["vals", "text"]], key: "project, name" },
  rows: { columns: [["project", C], ["tbl", C], ["key", "bytea"], ["value", "bytea"], ["codec", "smallint"]], key: "project, tbl, key" },
  groups: { columns: [["project", C], ["tbl", C], ["first", "bytea"], ["n", "integer"], ["entries", "bytea"], ["codec", "smallint"]], key: "project, tbl, first" },
  layout: { columns: [["version", "integer"]] },
};

/**
 * What differs in `tables` from the shape APEX gave them: each problem a phrase, and the tables
 * concerned. Columns added beside APEX's are left alone (every write names its columns). A schema
 * of layout 1 (`codecOptional`) may predate the `codec` columns, which its first writable open adds.
 */
export function shapeProblems(tables: string[], columns: string[], keys: string[], codecOptional: boolean): { problems: string[]; tables: string[] } {
  const types = new Map(columns.map((line) => [line.slice(0, line.indexOf(" ")), line.slice(line.indexOf(" ") + 1)]));
  const primary = new Map(keys.map((line) => [line.slice(0, line.indexOf(" ")), line.slice(line.indexOf(" ") + 2, -1)]));
  const problems: string[] = [];
  const changed = new Set<string>();
  for (const table of tables) {
    const shape = SHAPES[table]!;
    for (const [column, type] of shape.columns) {
      // (POSIX is PostgreSQL's other name for the C collation)
      const found = types.get(`${table}.${column}`)?.replace(' COLLATE "POSIX"', ' COLLATE "C"');
      if (found === type || (found === undefined && column === "codec" && codecOptional)) continue;
      problems.push(found === undefined ? `apex.${table} has no column ${column}` : `apex.${table}.${column} is ${found}, not ${type}`);
      changed.add(table);
    }
    if (shape.key !== undefined && primary.get(table) !== shape.key) {
      problems.push(primary.has(table) ? `apex.${table}'s primary key is (${primary.get(table)}), not (${shape.key})` : `apex.${table} has no primary key (APEX's is (${shape.key}))`);
      changed.add(table);
    }
  }
  return { problems, tables: [...changed] };
}

/** How APEX lays `table` out, as a CREATE TABLE statement (for the hint). */
export function tableDefinition(table: string): string {
  const shape = SHAPES[table]!;
  const columns = shape.columns.map(([name, type]) => `${name} ${type.replace("timestamp with time zone", "timestamptz")} NOT NULL`);
  return `CREATE TABLE apex.${table} (${[...columns, ...(shape.key ? [`PRIMARY KEY (${shape.key})`] : [])].join(", ")})`;
}
