/**
 * The time budgets e2e tests hold the shipped binary to. They are the product's promise ("a deny well
 * inside the deadline"), so they are stated against containerd's deadline, not as tight numbers: a
 * loaded 2-core CI box must not fail them, and a verifier that blocks the pull always does.
 */

/** containerd's default per_verifier_timeout (bindir.go): a verifier still running then blocks the pull. */
export const CONTAINERD_DEADLINE_MS = 10_000;

/** "Well inside the deadline": half of containerd's, leaving the rest to a node under load. */
export const WELL_INSIDE_MS = CONTAINERD_DEADLINE_MS / 2;
