/**
 * A throwaway PostgreSQL cluster for tests (scripts/pg-cluster.mjs, shared with the benchmarks):
 * initdb in a temporary directory, a free port, run by a non-root user, stopped by pid.
 */
export { freePort, postgresBinDir, startPostgres } from "../../scripts/pg-cluster.mjs";
export type { PostgresCluster } from "../../scripts/pg-cluster.mjs";
