"""Domain rules: the models and the rules about leads, consent, scores, segments, send windows and
tokens. Imports nothing above it."""
