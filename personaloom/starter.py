"""``personaloom init``: a commented starter spec and a small corpus to edit."""

from __future__ import annotations

from pathlib import Path

from personaloom.errors import ConfigError

SPEC = """\
# A personaloom spec: the data design. Every field is described in docs/spec.md.
# Check it with `personaloom validate spec.yaml`, run it with `personaloom run spec.yaml`.
name: starter

task:
  # What the writer produces, once per sample, from a persona's point of view.
  instruction: Write a question a person like you would ask a helpful AI assistant.
  output: {question: str}            # the fields of one record
  length: {min_words: 5, max_words: 120}

corpus:                               # texts personas are mined from (relative paths)
  - path: corpus/*.txt

personas:
  relations: [read, write, like, dislike]   # "Who is likely to <relation> this text?"
  per_text: 2
  relate_depth: 1                     # Persona-to-Persona rounds (0 turns it off)
  relate_per_persona: 2

traits:                               # every sample gets one value of each trait
  topic: {values: [health, money, travel], target: 2}    # accepted samples per value
  tone: {values: [casual, formal], target: 3}

novelty: {threshold: 0.9}             # reject drafts this similar to an accepted one
critic: {min_score: 3, max_revisions: 1}
budget: {max_calls: 200}              # stop after this many endpoint calls

# With no endpoint set, personaloom starts its embedded tiny local model. For real data,
# set OPENAI_BASE_URL / OPENAI_API_KEY, or:
# models:
#   default: {model: gpt-4o-mini, base_url: https://api.example.com/v1, api_key_env: MY_KEY}
concurrency: 2
seed: 0
"""

TEXTS = {
    "corpus/clinic-notice.txt": (
        "From Monday the walk-in clinic opens at 7 am. Bring your insurance card and a list "
        "of the medicines you take. Flu shots are free for people over 65 and for children "
        "under five. If you need an interpreter, tell the front desk when you arrive."
    ),
    "corpus/budget-forum.txt": (
        "I finally made a spreadsheet of every expense for three months. Groceries were twice "
        "what I guessed, and I pay for four streaming services I never watch. My plan: cancel "
        "two, cook on Sundays, and move fifty dollars a week into savings. Any tips?"
    ),
    "corpus/train-review.txt": (
        "The night train from Vienna to Venice was slower than flying, but I slept well, woke "
        "up to the Alps, and arrived in the middle of the city. Book the couchette early, "
        "bring your own breakfast, and keep your passport handy at the border."
    ),
}


def write_starter(directory: Path, *, force: bool = False) -> list[Path]:
    spec_path = directory / "spec.yaml"
    if spec_path.exists() and not force:
        raise ConfigError(f"{spec_path} exists; use --force to overwrite it")
    written = []
    directory.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(SPEC, encoding="utf-8")
    written.append(spec_path)
    for relative, text in TEXTS.items():
        path = directory / relative
        if path.exists() and not force:
            continue  # the user's own corpus file: keep it
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return written
