// What the SDK scripts share: their arguments (`node <script> <base url>`
// with STRATA_SU_EMAIL and STRATA_SU_PASSWORD set) and their checks, each
// of which ends the run (exit 1) on the first broken expectation.

export function args(script) {
  const base = process.argv[2];
  const email = process.env.STRATA_SU_EMAIL;
  const password = process.env.STRATA_SU_PASSWORD;
  if (!base || !email || !password) {
    console.error(`usage: STRATA_SU_EMAIL=.. STRATA_SU_PASSWORD=.. node ${script} <base url>`);
    process.exit(2);
  }
  return { base, email, password };
}

let passed = 0;

/// Run one check; on failure print it, with the server's answer, and exit.
export async function check(what, f) {
  try {
    await f();
    passed++;
  } catch (e) {
    const detail = e?.response ? JSON.stringify(e.response) : "";
    console.error(`sdk: ${what}: ${e?.stack ?? e} ${detail}`);
    process.exit(1);
  }
}

/// How many checks passed so far.
export function checks() {
  return passed;
}
