"""The drills: a scenario's world, a worker and the moves of the people in it (`codeblue drill`)."""
