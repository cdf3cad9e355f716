"""Column names of the canonical schema, in one place.

interactions.parquet : user, item, rating, timestamp, split [, review, explanation, feature]
items.parquet        : item, title [, description, profile, genre, director, cast, year ...]
users.parquet        : user [, profile, age, gender, occupation ...]
user2idx.json / item2idx.json : raw id (str) -> contiguous index (int)
"""

USER = "user"
ITEM = "item"
RATING = "rating"
TIMESTAMP = "timestamp"
SPLIT = "split"
REVIEW = "review"
EXPLANATION = "explanation"
FEATURE = "feature"

TITLE = "title"
DESCRIPTION = "description"
PROFILE = "profile"

TRAIN, VALID, TEST = "train", "valid", "test"
SPLITS = (TRAIN, VALID, TEST)

INTERACTION_REQUIRED = (USER, ITEM)
INTERACTION_OPTIONAL_TEXT = (REVIEW, EXPLANATION, FEATURE)
