"""CE4BIG Exchange core: settings, vocabularies, errors, persistence, the catalogue and
matcher, exchange services and i18n. It imports no edge (api, workflows, activities, emails)."""
