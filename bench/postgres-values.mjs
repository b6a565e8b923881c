// The values of the PostgreSQL benchmarks' keys (~1 KB each), in three kinds:
// - "x" (the default): `i:step:` then a shared filler of "x"s; compresses ~60× on its own;
// - "random": `i:step:` then pseudo-random base64 text; does not compress at all;
// - "text": a small JSON record (title, author, tags, a body of English-like sentences drawn from
//   a vocabulary of a few hundred words, some of them stock sentences that recur), different for
//   every key and step; like notes or chat messages, it compresses ~2× alone and ~3× in a block.
import { createHash } from "node:crypto";
import { mulberry32 } from "./lib.mjs";

const WORDS = (
  "the of and to in is that it for was on are as with his they at be this from have or by one had not but what all were when we there can an your " +
  "which their said if do will each about how up out them then she many some so these would other into has more her two like him see time could no make than " +
  "first been its who now people my made over did down only way find use may water long little very after words called just where most know get through back " +
  "much before go good new write our used me man too any day same right look think also around another came come work three must because does part even place " +
  "well such here take why help put different away again off went old number great tell men say small every found still between name should home big give air " +
  "line set own under read last never us left end along while might next sound below saw something thought both few those always show large often together asked " +
  "house world going want school important until form food keep children feet land side without boy once animal life enough took four head above kind began " +
  "almost live page got earth need far hand high year mother light country father let night picture being study second soon story since white ever paper hard " +
  "near sentence better best across during today however sure knew try told young sun thing whole hear example heard several change answer room sea against top " +
  "turned learn point city play toward five himself usually money seen didn't car morning given body family later order move data test build deploy merge branch " +
  "review agent task session checkpoint memory value error retry queue worker request response server client config schema index cache token budget plan step"
).split(" ");

/** A deterministic generator (mulberry32) seeded from a text. */
function generator(seed) {
  return mulberry32(createHash("sha256").update(seed).digest().readUInt32LE(0));
}

/** A word, the common ones far more often (roughly as Zipf's law has it). */
function word(next) {
  return WORDS[Math.floor(WORDS.length * next() ** 3)];
}

function sentence(next) {
  const length = 6 + Math.floor(next() * 12);
  const words = Array.from({ length }, () => word(next));
  words[0] = words[0][0].toUpperCase() + words[0].slice(1);
  return `${words.join(" ")}${next() < 0.15 ? "?" : "."}`;
}

/** Sentences that recur across values (boilerplate, as notes and logs have). */
const STOCK = Array.from({ length: 200 }, (_, n) => sentence(generator(`stock:${n}`)));

/** A function (key index, step) → value of about `filler.length` bytes, of the given kind. */
export function valueMaker(kind, filler) {
  if (kind === "x") return (i, step) => `${i}:${step}:${filler}`;
  if (kind === "random") {
    return (i, step) => {
      const random = Array.from({ length: 12 }, (_, n) => createHash("sha512").update(`${i}:${step}:${n}`).digest("base64")).join("");
      return `${i}:${step}:${random.slice(0, filler.length)}`;
    };
  }
  if (kind === "text") {
    return (i, step) => {
      const next = generator(`${i}:${step}`);
      const title = sentence(next).slice(0, 60);
      const tags = Array.from({ length: 1 + Math.floor(next() * 3) }, () => word(next));
      let body = "";
      while (body.length < filler.length - 160) body += (body ? " " : "") + (next() < 0.3 ? STOCK[Math.floor(next() * STOCK.length)] : sentence(next));
      return { id: i, step, title, author: `agent-${Math.floor(next() * 8)}`, tags, body };
    };
  }
  throw new Error(`unknown --values ${kind}: use x, random or text`);
}
