//! Procedural macros of [`multiproc`](https://docs.rs/multiproc): `#[worker]`,
//! `#[multiproc::main]` and `#[multiproc::process]`. Use them through `multiproc`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{FnArg, ItemFn, ItemImpl, Type, parse_macro_input, spanned::Spanned};

/// Registers a function so that child processes can run it.
///
/// The function stays as it is. Its arguments and result must be owned serde types; it may
/// be `async`; it may not be generic or take `self`.
#[proc_macro_attribute]
pub fn worker(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[worker] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    if let Err(error) = check_worker(&function) {
        return error.to_compile_error().into();
    }
    let ident = &function.sig.ident;
    quote! {
        #function

        ::multiproc::__private::inventory::submit! {
            ::multiproc::__private::WorkerEntry::new(
                || ::core::any::type_name_of_val(&#ident),
                |payload, batch| ::multiproc::__private::dispatch_worker(#ident, payload, batch),
                ::multiproc::__private::is_plain(&#ident),
            )
        }
    }
    .into()
}

fn check_worker(function: &ItemFn) -> syn::Result<()> {
    let signature = &function.sig;
    if !signature.generics.params.is_empty() {
        return Err(syn::Error::new(
            signature.generics.span(),
            "a #[worker] cannot be generic: a child process finds it by one name",
        ));
    }
    if signature.inputs.len() > 8 {
        return Err(syn::Error::new(
            signature.inputs.span(),
            "a #[worker] takes at most 8 arguments",
        ));
    }
    for input in &signature.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new(
                    receiver.span(),
                    "a #[worker] cannot take self",
                ));
            }
            FnArg::Typed(typed) => {
                if matches!(*typed.ty, Type::Reference(_) | Type::ImplTrait(_)) {
                    return Err(syn::Error::new(
                        typed.ty.span(),
                        "a #[worker]'s arguments cross a process boundary: take owned serde types",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Turns `async fn main` into a `main` that calls `multiproc::init()` first, then runs the
/// body on a multi-threaded tokio runtime. On a plain `fn main` (a program using
/// `multiproc::blocking`), only calls `multiproc::init()` first.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[multiproc::main] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    let attrs = &function.attrs;
    let visibility = &function.vis;
    let ident = &function.sig.ident;
    let output = &function.sig.output;
    let body = &function.block;
    let run = if function.sig.asyncness.is_some() {
        quote! { ::multiproc::__private::block_on(async move #body) }
    } else {
        quote! { #body }
    };
    quote! {
        #(#attrs)*
        #visibility fn #ident() #output {
            ::multiproc::init();
            #run
        }
    }
    .into()
}

/// Registers an `impl multiproc::Run for T` so that `Process::from_run` can start it.
#[proc_macro_attribute]
pub fn process(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[multiproc::process] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let implementation = parse_macro_input!(item as ItemImpl);
    if implementation.trait_.is_none() {
        return syn::Error::new(
            implementation.impl_token.span(),
            "#[multiproc::process] goes on an `impl multiproc::Run for YourType`",
        )
        .to_compile_error()
        .into();
    }
    if !implementation.generics.params.is_empty() {
        return syn::Error::new(
            implementation.generics.span(),
            "a #[multiproc::process] type cannot be generic: a child process finds it by one name",
        )
        .to_compile_error()
        .into();
    }
    let self_type = &implementation.self_ty;
    quote! {
        #implementation

        ::multiproc::__private::inventory::submit! {
            ::multiproc::__private::WorkerEntry::new(
                || ::core::any::type_name::<#self_type>(),
                |payload, batch| ::multiproc::__private::dispatch_run::<#self_type>(payload, batch),
                false,
            )
        }
    }
    .into()
}
