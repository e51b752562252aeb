/**
 * Checked-in htpasswd lines for the registries tests start (docker-registry accepts only bcrypt).
 *
 * How they were made (once, 2026-12-01): with the bcrypt implementation this file used to hold
 * (`git show a2e101f:test/helpers/bcrypt.ts`, `bcrypt(password)`: $2b$, cost 4, random salt), and
 * checked independently with libxcrypt:
 *   python3 -c "import crypt; print(crypt.crypt('s3cret', '\$2b\$04\$Ac0DKHS2KLtJAKb2ZaJUMe'))"
 * To add one: `htpasswd -nbB -C 4 pg 'PASSWORD'` (apache2-utils), or the crypt() line above with a new salt.
 */
const HASHES: Readonly<Record<string, string>> = {
  s3cret: '$2b$04$Ac0DKHS2KLtJAKb2ZaJUMecn.jSsDKU4illqOjceBc7Lken/WSAzK',
  'pr0vider-s3cret': '$2b$04$mGJLEkfOez9an5A0UAEroeuD5BAKB..t4ICHRH2D0kkUl/w7sSOZa',
};

/** The user, password and htpasswd line most tests use. */
export const HTPASSWD = { user: 'pg', password: 's3cret', line: `pg:${HASHES.s3cret}` } as const;

/** The checked-in bcrypt hash of `password` (kept under its old name so existing tests compile). */
export function bcrypt(password: string): string {
  const hash = HASHES[password];
  if (!hash) throw new Error(`no checked-in bcrypt hash for this password; add one to test/helpers/bcrypt.ts`);
  return hash;
}
