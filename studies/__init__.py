"""Studies of what BatchNormalization does on beans (issue 11): each a script, one command in
docs/bn.md, writing its table and figure; `shared` holds what they have in common."""
