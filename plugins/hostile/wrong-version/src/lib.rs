//! `wrong-version`: a component the host must refuse when loading it (see `wit/rules.wit`).

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ path: "wit", world: "alert-rule" });

    struct Rule;

    impl exports::sluice::rules::rule::Guest for Rule {
        fn evaluate(window_json: String) -> String {
            window_json
        }
    }

    export!(Rule);
}
