use super::*;

const A: Variable = Variable::new("CRUDDUR_TEST_A", "a variable of these tests");

#[test]
fn debug_shows_the_names_never_the_values() {
    let settings = Settings::from_pairs([("DATABASE_URL", "postgres://u:hunter2@h/d")]);
    let shown = format!("{settings:?}");
    assert!(shown.contains("DATABASE_URL"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn a_blank_value_is_unset_and_with_and_without_change_one_variable() {
    let blank = Settings::from_pairs([(A.name(), " \t")]);
    assert_eq!(blank.get(&A), None);
    assert!(!blank.is_set(&A));
    let set = blank.with(&A, "x");
    assert_eq!(set.get(&A), Some("x"));
    assert_eq!(set.without(&A).get(&A), None);
}

#[test]
fn numbers_outside_their_range_name_the_variable_and_the_range() {
    let read = |value: &str| Settings::from_pairs([(A.name(), value)]).number(&A, 1..=10u32);
    assert_eq!(read(" 10 ").unwrap(), Some(10));
    assert_eq!(Settings::default().number(&A, 1..=10u32).unwrap(), None);
    for value in ["0", "11", "-1", "ten", "1.5"] {
        let err = read(value).unwrap_err();
        assert!(
            matches!(err, Error::InvalidSetting { .. }),
            "{value}: {err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "invalid value `{value}` for CRUDDUR_TEST_A: must be a whole number from 1 to 10"
            )
        );
    }
    let long = "9".repeat(100);
    let err = read(&long).unwrap_err().to_string();
    assert!(!err.contains(&long), "a long value is cut short: {err}");
}

#[test]
fn millis_are_a_duration() {
    let s = Settings::from_pairs([(A.name(), "1500")]);
    assert_eq!(
        s.millis(&A, 0..=2000).unwrap(),
        Some(Duration::from_millis(1500))
    );
    assert!(s.millis(&A, 0..=1000).is_err());
}

#[test]
fn a_flag_is_1_or_0_and_nothing_else() {
    let read = |value: &str| Settings::from_pairs([(A.name(), value)]).flag(&A);
    assert!(!Settings::default().flag(&A).unwrap());
    assert!(read("1").unwrap());
    assert!(!read("0").unwrap());
    assert!(!read(" ").unwrap());
    for value in ["yes", "true", "2"] {
        let err = read(value).unwrap_err().to_string();
        assert!(
            err.contains("CRUDDUR_TEST_A") && err.contains("1 or 0"),
            "{value}: {err}"
        );
    }
}

#[test]
fn a_list_drops_blank_entries() {
    let s = Settings::from_pairs([(A.name(), " a, ,b ,")]);
    assert_eq!(s.list(&A), ["a", "b"]);
    assert!(Settings::default().list(&A).is_empty());
}
