"""`whyrec data instructions`: RecAlpaca's Alpaca-style training and test prompts.

`build` (build_instructions, the pipeline), `examples` (one user's prompt from the encoder
split), `outputs` (teacher or grounded answers), `prompts` (templates and paraphrases),
`testusers` (matching RecAlpaca's shared test users), `titles` (title parsing), `lookup`
(rebuild one user's prompt for `whyrec recommend`).
"""
