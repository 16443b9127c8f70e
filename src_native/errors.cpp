#include "errors.h"

namespace nb = nanobind;

namespace allama {

namespace {

// The Python classes live in allama/errors.py so that the whole hierarchy is
// defined (and documented) in one place. It is imported on first use, so that
// the extension also imports on its own (nanobind's stubgen does that).
void raise_as(const char * class_name, const char * message) {
    nb::object cls = nb::module_::import_("allama.errors").attr(class_name);
    PyErr_SetString(cls.ptr(), message);
}

}  // namespace

void init_errors(nb::module_ &) {
    nb::register_exception_translator([](const std::exception_ptr & p, void *) {
        try {
            std::rethrow_exception(p);
        } catch (const ModelLoadFailure & e) {
            raise_as("ModelLoadError", e.what());
        } catch (const GrammarFailure & e) {
            raise_as("GrammarError", e.what());
        } catch (const KVCacheFull & e) {
            raise_as("KVCacheFullError", e.what());
        } catch (const DecodeAborted & e) {
            raise_as("DecodeAbortedError", e.what());
        } catch (const DecodeFailure & e) {
            raise_as("DecodeError", e.what());
        } catch (const UseAfterClose & e) {
            raise_as("ClosedError", e.what());
        }
    });
}

}  // namespace allama
