"""The data and the mathematics every other room uses: samples and boxes, the compass (Eq. 4-5), the
metrics' equations (Eq. 6-7), prompts, the record schema, logs and safe text. Imports nothing else of creg."""
