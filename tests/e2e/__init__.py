"""End-to-end tests: real ``antispam serve`` processes, faults, fuzzing, training on the corpus."""
